//! Message type bytes, named per direction, and the other one-byte codes the
//! protocol uses (Describe/Close targets, transaction status).
//!
//! The same byte means different messages in each direction ('D' is
//! Describe from a client and DataRow from a server), so a tag is always
//! read through the module of its direction.

/// Messages a client sends once the session is established.
pub mod frontend {
    pub const BIND: u8 = b'B';
    pub const CLOSE: u8 = b'C';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const PARSE: u8 = b'P';
    pub const QUERY: u8 = b'Q';
    pub const SYNC: u8 = b'S';
    pub const TERMINATE: u8 = b'X';
    /// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse
    /// share this byte (authentication only).
    pub const PASSWORD: u8 = b'p';

    /// Every type byte valid after authentication.
    pub const ALL: [u8; 13] = [
        BIND,
        CLOSE,
        COPY_DATA,
        COPY_DONE,
        COPY_FAIL,
        DESCRIBE,
        EXECUTE,
        FLUSH,
        FUNCTION_CALL,
        PARSE,
        QUERY,
        SYNC,
        TERMINATE,
    ];
}

/// Messages a server sends.
pub mod backend {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const DATA_ROW: u8 = b'D';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const NO_DATA: u8 = b'n';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// What a Describe or Close names.
pub mod target {
    pub const STATEMENT: u8 = b'S';
    pub const PORTAL: u8 = b'P';
}

/// The transaction status a ReadyForQuery carries.
pub mod status {
    /// Not in a transaction block.
    pub const IDLE: u8 = b'I';
    /// In a transaction block.
    pub const IN_TRANSACTION: u8 = b'T';
    /// In a failed transaction block: statements are refused until it ends.
    pub const FAILED: u8 = b'E';
}

/// Field codes of an ErrorResponse or NoticeResponse.
pub mod field {
    /// Severity, possibly localized.
    pub const SEVERITY: u8 = b'S';
    /// Severity, never localized (PostgreSQL 9.6 and later).
    pub const SEVERITY_RAW: u8 = b'V';
    pub const CODE: u8 = b'C';
    pub const MESSAGE: u8 = b'M';
    pub const DETAIL: u8 = b'D';
    pub const HINT: u8 = b'H';
    pub const POSITION: u8 = b'P';
    pub const ROUTINE: u8 = b'R';
}
