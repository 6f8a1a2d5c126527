//! .reg text import/export (owned by the regtext helper).
