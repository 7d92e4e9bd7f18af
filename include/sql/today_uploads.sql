-- Today's photos updated since the same-day runs' watermark (plate_masking_today), one row per
-- photo. The same rows and columns as day_uploads.sql, limited to recent changes, so that a
-- same-day run every few minutes costs little however many photos the day already has.
--
-- Named parameters (psycopg style, written as percent-(name)-s):
--   day_start, day_end    site-local timestamps of today, end exclusive (see day_uploads.sql).
--   last_processed_time   the same-day watermark: the newest updated_at seen, less an overlap
--                         (platemask.today.OVERLAP), as site-local ISO text; NULL on the day's
--                         first same-day run, which reads the whole day.
-- The daily run keeps reading the whole day (day_uploads.sql): it is the day's final word.
-- Adapt the table and column names to your site, as in day_uploads.sql.
SELECT
    id                                         AS file_id,
    COALESCE(inspresultdata_cd, car_cd::text)  AS car_id,
    file_path,
    branch_no,
    updated_at
FROM upload_files
WHERE created_at >= %(day_start)s
  AND created_at <  %(day_end)s
  AND deleted_at IS NULL
  AND (CAST(%(last_processed_time)s AS timestamp) IS NULL
       OR updated_at > CAST(%(last_processed_time)s AS timestamp))
ORDER BY COALESCE(inspresultdata_cd, car_cd::text), branch_no ASC, id;
