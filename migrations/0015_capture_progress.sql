-- 0015: how far the ground truth of each range of meters is written (issue 12), so that the database
-- holds one continuous history per meter: a worker restarted on its shard resumes where its rows end
-- instead of writing the run again from its start, and a run started after an earlier run (or a
-- `fleet backfill`) ended writes the simulated time in between first.
--
-- One row per range of meters written together (a worker's shard, a backfill chunk). Whoever writes
-- profile rows for the range updates its row in the same transaction as the rows, so a row never
-- claims more than the profile tables hold, and the time only moves forward. A writer starting on a
-- shard resumes at the earliest, over the shard's meters, of the furthest time recorded for a range
-- holding the meter (the run's start if some meter has none).

CREATE TABLE capture_progress (
    meter_from bigint NOT NULL,
    meter_to bigint NOT NULL,
    captured_until double precision NOT NULL,
    captured_until_at timestamptz GENERATED ALWAYS AS (to_timestamp(captured_until)) STORED,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT capture_progress_pkey PRIMARY KEY (meter_from, meter_to),
    CONSTRAINT capture_progress_range_check CHECK (meter_from >= 0 AND meter_to > meter_from),
    CONSTRAINT capture_progress_time_check CHECK (captured_until > '-Infinity' AND captured_until < 'Infinity')
);

COMMENT ON TABLE capture_progress IS
    'How far the profile rows of each range of meters are written: every row its meters captured up to captured_until (simulated time) is in the profile tables; updated in the same transaction as the rows';
COMMENT ON COLUMN capture_progress.meter_from IS 'First meter_id of the range';
COMMENT ON COLUMN capture_progress.meter_to IS 'One past the last meter_id of the range';
COMMENT ON COLUMN capture_progress.captured_until IS 'Simulated time, Unix seconds (exact, as the writers keep it), up to which the range''s captures are written';
COMMENT ON COLUMN capture_progress.captured_until_at IS 'captured_until as a timestamp, for reading';
COMMENT ON COLUMN capture_progress.updated_at IS 'Wall-clock time of the last move';
