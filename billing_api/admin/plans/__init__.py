"""Back-office plans: create, edit, archive and restore (every change audited)."""
