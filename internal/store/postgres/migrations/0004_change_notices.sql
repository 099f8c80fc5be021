-- Change notices for the replicas (docs/decisions/0029-replicas.md): a
-- standby admits readings with its own copy of the device registry and
-- converts them with its own copy of the sensor configs, so every change
-- the primary commits to either is announced on the channel
-- kaiser_changes, which Store.WatchChanges listens to. NOTIFY is delivered
-- at commit, so a listener only hears committed changes, and the same
-- payload twice in one transaction is delivered once. Payloads:
-- 'device:<esp_id>' and 'sensors:<esp_id>'.

-- A device row inserted or deleted (a registration, a discovery, a purge).
CREATE FUNCTION kaiser_notify_device() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('kaiser_changes', 'device:' || OLD.device_id);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('kaiser_changes', 'device:' || NEW.device_id);
    RETURN NEW;
END
$$;

-- The alert_config of a device's metadata, which decides whether the
-- threshold alerts of its readings are suppressed. It must never fail the
-- device's save: jsonb holds no \u0000, which a device's reported strings
-- in the metadata may carry, so a document with one is read without them,
-- and one that still does not parse stands in whole, so that a change
-- shows either way.
CREATE FUNCTION kaiser_alert_config(metadata text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    BEGIN
        RETURN metadata::jsonb -> 'alert_config';
    EXCEPTION WHEN others THEN
        NULL;
    END;
    BEGIN
        RETURN replace(metadata, '\u0000', '')::jsonb -> 'alert_config';
    EXCEPTION WHEN others THEN
        NULL;
    END;
    RETURN to_jsonb(metadata);
END
$$;

CREATE TRIGGER devices_notice_insert_delete AFTER INSERT OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION kaiser_notify_device();

-- An update announces itself unless it changed only what every heartbeat
-- changes (last_seen, updated_at, version and the telemetry in metadata):
-- each device saves once a minute, and a notice per heartbeat would make
-- every standby reload every device every minute. Status (approval,
-- rejection, the deleted marker, liveness), identity, hardware type (the
-- readings' source), zone and approval fields, and the metadata's
-- alert_config are what admission and conversion read.
CREATE TRIGGER devices_notice_update AFTER UPDATE ON devices
    FOR EACH ROW WHEN (
        (OLD.id, OLD.device_id, OLD.name, OLD.status, OLD.kaiser_id, OLD.zone_id, OLD.zone_name,
         OLD.master_zone_id, OLD.hardware_type, OLD.ip_address, OLD.firmware_version, OLD.discovered_at,
         OLD.approved_at, OLD.approved_by, OLD.rejection_reason, OLD.created_at)
        IS DISTINCT FROM
        (NEW.id, NEW.device_id, NEW.name, NEW.status, NEW.kaiser_id, NEW.zone_id, NEW.zone_name,
         NEW.master_zone_id, NEW.hardware_type, NEW.ip_address, NEW.firmware_version, NEW.discovered_at,
         NEW.approved_at, NEW.approved_by, NEW.rejection_reason, NEW.created_at)
        OR kaiser_alert_config(OLD.metadata) IS DISTINCT FROM kaiser_alert_config(NEW.metadata)
    )
    EXECUTE FUNCTION kaiser_notify_device();

-- Any change of a sensor config; an update that moves a config to another
-- device announces both.
CREATE FUNCTION kaiser_notify_sensors() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('kaiser_changes', 'sensors:' || OLD.esp_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('kaiser_changes', 'sensors:' || NEW.esp_id);
        RETURN NEW;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER sensor_configs_notice AFTER INSERT OR UPDATE OR DELETE ON sensor_configs
    FOR EACH ROW EXECUTE FUNCTION kaiser_notify_sensors();

-- A new series: a reading another replica ingested first opened it, and a
-- replica learns of it here, so that the readings relayed to the primary
-- find their series (sensor.Service.ApplyRemote). Series are never updated
-- or deleted, and an existing one is never inserted again.
CREATE TRIGGER sensor_series_notice AFTER INSERT ON sensor_series
    FOR EACH ROW EXECUTE FUNCTION kaiser_notify_sensors();
