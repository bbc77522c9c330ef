-- 0010: a received push is identified by its long-invoke-id (the minute it was due), not by the date-time it
-- carries: a meter catching up several overdue pushes of one push setup sends them in the same second, and
-- those are different pushes; a push delivered twice (a retry) carries the same invoke id and stays one row.

-- Rows recorded under the old key may repeat an invoke id (the same push received twice at different
-- date-times): keep the first received of each.
DELETE FROM push_received a USING push_received b
WHERE a.meter_id = b.meter_id AND a.push_logical_name = b.push_logical_name AND a.long_invoke_id = b.long_invoke_id
  AND (a.received_at, a.notified_at) > (b.received_at, b.notified_at);
ALTER TABLE push_received DROP CONSTRAINT push_received_pkey;
ALTER TABLE push_received ADD CONSTRAINT push_received_pkey PRIMARY KEY (meter_id, push_logical_name, long_invoke_id);
COMMENT ON TABLE push_received IS 'Pushes (DataNotification) received by fleet hes-sink, deciphered and attributed to their meter; keyed by meter, push setup and long-invoke-id (the minute the push was due): a push received twice is one row';
