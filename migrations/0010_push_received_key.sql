-- 0010: a received push is identified by its long-invoke-id (the minute it was due), not by the date-time it
-- carries: a meter catching up several overdue pushes of one push setup sends them in the same second, and
-- those are different pushes; a push delivered twice (a retry) carries the same invoke id and stays one row.

ALTER TABLE push_received DROP CONSTRAINT push_received_pkey;
ALTER TABLE push_received ADD CONSTRAINT push_received_pkey PRIMARY KEY (meter_id, push_logical_name, long_invoke_id);
COMMENT ON TABLE push_received IS 'Pushes (DataNotification) received by fleet hes-sink, deciphered and attributed to their meter; keyed by meter, push setup and long-invoke-id (the minute the push was due): a push received twice is one row';
