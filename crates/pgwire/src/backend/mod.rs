//! Typed views of messages sent by the server, one file per message, and the encoders for
//! those a proxy sends itself.
//!
//! Build views with [`Message::decode`](crate::Message::decode) from a message known to come
//! from the server; DataRow and CopyData are relayed without a look.

mod authentication;
mod backend_key_data;
mod command_complete;
mod copy_response;
mod data_row;
mod error_response;
mod notice_response;
mod notification_response;
mod parameter_status;
mod ready_for_query;
mod row_description;

pub use authentication::AuthenticationRequest;
pub use backend_key_data::BackendKeyData;
pub use command_complete::CommandComplete;
pub use copy_response::{CopyBothResponse, CopyInResponse, CopyOutResponse, CopyResponse};
pub use data_row::DataRow;
pub use error_response::{ErrorResponse, Severity};
pub use notice_response::NoticeResponse;
pub use notification_response::NotificationResponse;
pub use parameter_status::ParameterStatus;
pub use ready_for_query::{ReadyForQuery, TransactionStatus};
pub use row_description::{FieldDescription, RowDescription};
