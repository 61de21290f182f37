"""Back-office movie catalog: the ETL's bulk upsert and full listing, and staff's single edits."""
