//! The candle backend: placeholder until its issue lands.
