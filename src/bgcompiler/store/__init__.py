"""The job store: jobs, their events and their webhook deliveries, in SQLite (embedded, the
default) or PostgreSQL. Every statement is parameterized; nothing a submission sends becomes
SQL or a path."""
