-- 0014: push setups may ask for confirmed pushes (issue 6; push setup version 2): push_operation_method
-- 0 unconfirmed (retry when the call fails), 1 unconfirmed (retry on a missing lower-layer
-- confirmation), 2 confirmed (the head-end answers Data-Notification-Confirm; retry without it).

ALTER TABLE push_setups ADD COLUMN push_operation_method smallint NOT NULL DEFAULT 0;
ALTER TABLE push_setups ADD CONSTRAINT push_setups_operation_method_check CHECK (push_operation_method IN (0, 1, 2));
COMMENT ON COLUMN push_setups.push_operation_method IS 'push_operation_method of push setup v2: 0/1 unconfirmed, 2 confirmed (the push setup then shows as version 2)';
