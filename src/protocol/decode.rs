//! (in progress)
pub const CONNECT_MAX_SIZE: usize = 100_000;
pub struct Decoder;
#[derive(Debug)]
pub enum DecodeError {}
