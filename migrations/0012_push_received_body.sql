-- 0012: push_received keeps what each push carried (issue 6): the notification body as received and
-- deciphered (A-XDR: the structure of the push object list's values), so a head-end's view of an alert
-- (its Event Status Word) or of a block can be compared with the meters' ground truth.

ALTER TABLE push_received ADD COLUMN body bytea;
COMMENT ON COLUMN push_received.body IS 'The DataNotification body (A-XDR, deciphered): the values of the push object list';
