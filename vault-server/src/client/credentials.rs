//! Credentials as secret types: a bearer token is held in a zeroizing buffer, never cloned
//! and never printed (its `Debug` says only that there is one), and it leaves this module
//! only as the `authorization` metadata of a request ([`CallMetadata`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tonic::Request;
use tonic::metadata::MetadataValue;
use vault_proto::metadata;
use zeroize::Zeroizing;

use super::Error;

/// A client's bearer token. An empty token is no token: see [`Token::new`].
pub struct Token(Zeroizing<String>);

impl Token {
    /// The token in `text`, surrounding whitespace removed (a token file ends with a
    /// newline); `None` when nothing is left.
    pub fn new(text: &str) -> Option<Self> {
        let trimmed = text.trim();
        (!trimmed.is_empty()).then(|| Self(Zeroizing::new(trimmed.to_owned())))
    }

    /// The token held in the file at `path` (see [`Token::new`]); the file's text is wiped
    /// once read.
    pub fn read_file(path: &Path) -> std::io::Result<Option<Self>> {
        let text = Zeroizing::new(std::fs::read_to_string(path)?);
        Ok(Self::new(&text))
    }

    /// The `authorization` value carrying the token, marked sensitive (never indexed by
    /// HTTP/2 header compression).
    fn authorization(&self) -> Result<MetadataValue<tonic::metadata::Ascii>, Error> {
        let value = Zeroizing::new(metadata::bearer(&self.0));
        let mut value =
            MetadataValue::try_from(value.as_str()).map_err(|_| Error::Unsendable("token"))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<secret>)")
    }
}

/// What every request of a session carries: the token (none when a client certificate
/// identifies the caller) and, for calls on personal data, the declared purpose. Cheap to
/// clone: the token is shared, never copied.
#[derive(Debug, Clone, Default)]
pub struct CallMetadata {
    token: Option<Arc<Token>>,
    purpose: Option<String>,
}

impl CallMetadata {
    /// Requests with `token` (none: no `authorization`) and no purpose.
    pub fn new(token: Option<Token>) -> Self {
        Self {
            token: token.map(Arc::new),
            purpose: None,
        }
    }

    /// The same credentials, declaring `purpose` (none: no `x-vault-purpose`).
    pub fn with_purpose(&self, purpose: Option<&str>) -> Self {
        Self {
            token: self.token.clone(),
            purpose: purpose.map(str::to_owned),
        }
    }

    /// The purpose these requests declare.
    pub fn purpose(&self) -> Option<&str> {
        self.purpose.as_deref()
    }

    /// `message` with `authorization: Bearer <token>` and, when there is one,
    /// `x-vault-purpose`.
    pub fn request<T>(&self, message: T) -> Result<Request<T>, Error> {
        let mut req = Request::new(message);
        if let Some(token) = &self.token {
            req.metadata_mut()
                .insert(metadata::AUTHORIZATION, token.authorization()?);
        }
        if let Some(p) = &self.purpose {
            let value =
                MetadataValue::try_from(p.as_str()).map_err(|_| Error::Unsendable("purpose"))?;
            req.metadata_mut().insert(metadata::PURPOSE, value);
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_never_printed_and_empty_means_none() {
        let token = Token::new(" s3cret\n").unwrap();
        assert_eq!(format!("{token:?}"), "Token(<secret>)");
        assert!(Token::new(" \n").is_none());
        let calls = CallMetadata::new(Some(token)).with_purpose(Some("newsletter"));
        assert!(!format!("{calls:?}").contains("s3cret"));
        let req = calls.request(()).unwrap();
        assert_eq!(
            req.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(
            req.metadata().get(vault_proto::metadata::PURPOSE).unwrap(),
            "newsletter"
        );
        let none = CallMetadata::new(None).request(()).unwrap();
        assert!(none.metadata().is_empty());
        let bad = CallMetadata::new(None).with_purpose(Some("a\nb"));
        assert_eq!(
            bad.request(()).unwrap_err().to_string(),
            "the purpose contains characters that cannot be sent"
        );
    }
}
