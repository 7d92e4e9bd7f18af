-- The photos uploaded on one site-local calendar day, one row per photo (spec rule 0).
--
-- Named parameters (psycopg style, written as percent-(name)-s):
--   day_start, day_end    site-local timestamps of the day, end exclusive. The session runs in
--                         PLATEMASK_TIMEZONE, so they select the site's day from a timestamp
--                         column of site-local times and from a timestamptz column alike.
--   last_processed_time   the tracking file's watermark, NULL on a first run; usable for an
--                         incremental query. This default reads the whole day and lets
--                         platemask skip finished photos, so deleted or re-sorted rows are seen.
--   updated_since         NULL for the daily run (the whole day); for a same-day run
--                         (plate_masking_today) the newest updated_at it has seen, less an
--                         overlap, so that a run every few minutes reads only recent changes.
--                         Keep its line when you adapt the query: without it every same-day run
--                         reads the whole day (still correct, no longer cheap).
-- Columns platemask needs: file_id, car_id, file_path (relative to S3_MOUNT), branch_no,
-- updated_at (a changed row is processed again). Adapt the table and column names to your site.
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
  AND (CAST(%(updated_since)s AS timestamp) IS NULL OR updated_at > CAST(%(updated_since)s AS timestamp))
ORDER BY COALESCE(inspresultdata_cd, car_cd::text), branch_no ASC, id;
