-- The reference table of the specification (section 6), created by the tests and the demo.
-- A site's real table may differ: adapt day_uploads.sql, not this file.
CREATE TABLE IF NOT EXISTS upload_files (
    id                bigserial PRIMARY KEY,
    car_cd            bigint    NOT NULL,
    inspresultdata_cd text      NULL,
    branch_no         integer   NULL,
    file_path         text      NOT NULL,  -- relative to S3_MOUNT: /upfile/1041/8430/10418430001.jpg
    created_at        timestamp NOT NULL DEFAULT now(),  -- upload time, site-local (Asia/Tokyo)
    updated_at        timestamp NOT NULL DEFAULT now(),
    deleted_at        timestamp NULL                     -- soft delete: never processed
);
