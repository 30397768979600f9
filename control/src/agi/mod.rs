//! FastAGI client.
