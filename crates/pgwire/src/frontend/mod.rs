//! Typed views of messages sent by the client, one file per message.
//!
//! Build them with [`Message::decode`](crate::Message::decode) from a message known to come
//! from the client; the relay needs only these few, and passes every other message on as it is.

mod bind;
mod close;
mod describe;
mod execute;
mod flush;
mod function_call;
mod parse;
mod password_message;
mod query;
mod sync;
mod terminate;

pub use bind::Bind;
pub use close::{Close, Target};
pub use describe::Describe;
pub use execute::Execute;
pub use flush::Flush;
pub use function_call::FunctionCall;
pub use parse::Parse;
pub use password_message::PasswordMessage;
pub use query::Query;
pub use sync::Sync;
pub use terminate::Terminate;
