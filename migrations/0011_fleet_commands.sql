-- 0011: runtime commands to a running fleet (issue 6): `fleet inject` writes a row, a trigger notifies
-- the workers (LISTEN fleet_commands), each worker applies it to the meters of its shard the command
-- selects and records how many in fleet_command_results.
--
-- first_meter/last_meter bound the region (inclusive; NULL = the whole fleet); share is the seeded
-- fraction of the region's meters it reaches (the same meters for the same command_id in every worker
-- and every run). params: duration_s (simulated seconds; none = until a restore), code (tamper event
-- code), factor (load change).

CREATE TABLE fleet_commands (
    command_id bigserial NOT NULL,
    action text NOT NULL,
    first_meter bigint,
    last_meter bigint,
    share double precision NOT NULL DEFAULT 1.0,
    params jsonb NOT NULL DEFAULT '{}'::jsonb,
    issued_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fleet_commands_pkey PRIMARY KEY (command_id),
    CONSTRAINT fleet_commands_action_check
        CHECK (action IN ('power-failure', 'restore', 'tamper', 'link-down', 'load-change')),
    CONSTRAINT fleet_commands_share_check CHECK (share > 0 AND share <= 1),
    CONSTRAINT fleet_commands_region_check CHECK (first_meter IS NULL OR last_meter IS NULL OR first_meter <= last_meter)
);
COMMENT ON TABLE fleet_commands IS 'Runtime commands to a running fleet (fleet inject): power failures, restores, tampers, link faults, load changes';

CREATE TABLE fleet_command_results (
    command_id bigint NOT NULL REFERENCES fleet_commands (command_id) ON DELETE CASCADE,
    shard_start bigint NOT NULL,
    shard_stop bigint NOT NULL,
    meters integer NOT NULL,
    sim_at timestamptz NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fleet_command_results_pkey PRIMARY KEY (command_id, shard_start)
);
COMMENT ON TABLE fleet_command_results IS 'What each worker did with a command: how many of its meters it reached, at which simulated time';

CREATE FUNCTION fleet_commands_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fleet_commands', NEW.command_id::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER fleet_commands_notify AFTER INSERT ON fleet_commands
    FOR EACH ROW EXECUTE FUNCTION fleet_commands_notify();
