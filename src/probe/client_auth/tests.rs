//! Unit tests of client authentication: every method decorates the request as it must.
