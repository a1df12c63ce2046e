-- When the lease sweep took a connector for gone: the time its open sessions
-- were completed at. Heard again by the same run (a partition that healed, a
-- control plane it could not reach), the connector gets those sessions back
-- open; a new run's Hello forgets it. (Same column in
-- migrations/postgres/0006_connector_lapse.sql.)
ALTER TABLE connectors ADD COLUMN lapsed_us INTEGER;
