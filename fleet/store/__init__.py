"""Storage: one writer engine for every table, all SQL, the migrations runner, default settings."""
