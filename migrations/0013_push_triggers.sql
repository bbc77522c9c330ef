-- 0013: push schedules may name the trigger of a push that does not go on a period (issue 6): the
-- billing push goes when a billing period closes (ON_BILLING), event-log pushes when their log takes
-- an event (ON_EVENT), as the alert push goes on ESW bits (ON_ALARM).

ALTER TABLE push_schedules DROP CONSTRAINT push_schedules_type_check;
ALTER TABLE push_schedules ADD CONSTRAINT push_schedules_type_check CHECK (schedule_type IN ('FIFTEEN_MIN',
    'THIRTY_MIN', 'ONE_HOUR', 'FOUR_HOUR', 'EIGHT_HOUR', 'TWELVE_HOUR', 'TWENTY_FOUR_HOUR', 'ON_ALARM', 'ON_BILLING',
    'ON_EVENT'));
