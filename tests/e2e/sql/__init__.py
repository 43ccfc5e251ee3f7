"""End-to-end tests of ``portcullis sql`` against PostgreSQL and SQLite, through the SDK client."""
