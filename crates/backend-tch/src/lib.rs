//! The tch backend: placeholder until its issue lands.
