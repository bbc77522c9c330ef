-- 0003: what `fleet backfill` has done, so an interrupted backfill resumes where it stopped.
--
-- One row per chunk of meters written for a job (a fleet identity and a window of days), committed in
-- the same transaction as the chunk's rows: a row here means every row of the chunk is in the profile
-- tables, and a chunk without one is written again (its rows skip what is already there).

CREATE TABLE backfill_progress (
    job_key text NOT NULL,
    meter_from bigint NOT NULL,
    meter_to bigint NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    rows_written bigint NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT backfill_progress_pkey PRIMARY KEY (job_key, meter_from),
    CONSTRAINT backfill_progress_range_check CHECK (meter_to > meter_from AND window_end > window_start)
);

COMMENT ON TABLE backfill_progress IS
    'Chunks of meters `fleet backfill` has written, per job (fleet seed, meter kinds and window); committed with the chunk''s rows';
COMMENT ON COLUMN backfill_progress.job_key IS 'Hash of what makes two backfills the same job: fleet seed, meter kinds, window';
COMMENT ON COLUMN backfill_progress.meter_from IS 'First meter_id of the chunk';
COMMENT ON COLUMN backfill_progress.meter_to IS 'One past the last meter_id of the chunk';
COMMENT ON COLUMN backfill_progress.rows_written IS 'Rows the chunk added (rows already present are not counted)';
