//! Bearer tokens of `POST /messages` (`INGEST_TOKENS`).
//!
//! A token is a password: it is compared in constant time, against every configured token
//! without stopping at the first match (so the time taken says nothing about which token, or
//! how much of one, matched), never logged (each is registered with the log writer's mask when
//! it is parsed) and never echoed (its `Debug` shows `***`; configuration errors never repeat
//! the variable's value).

use std::fmt;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::error::ApiError;

/// Fewest characters of a token: a short one can be guessed, and the log mask would not
/// recognise it in free text.
pub const MIN_TOKEN_LEN: usize = 16;

/// The accepted bearer tokens; none: ingestion is disabled (403).
#[derive(Clone, Default)]
pub struct IngestTokens(Arc<[Box<[u8]>]>);

impl IngestTokens {
    /// Parses `INGEST_TOKENS`: comma-separated tokens of at least [`MIN_TOKEN_LEN`] visible
    /// ASCII characters; blank items are skipped, so an empty value disables ingestion. Each
    /// token is registered with the log writer's mask. Errors never contain a token.
    pub fn parse(text: &str) -> Result<IngestTokens, String> {
        let mut tokens = Vec::new();
        for (index, token) in text.split(',').map(str::trim).enumerate() {
            if token.is_empty() {
                continue;
            }
            let item = index + 1;
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "token {item} holds a character that is not visible ASCII; expected comma-separated tokens such as the output of `openssl rand -hex 32`"
                ));
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "token {item} is shorter than {MIN_TOKEN_LEN} characters; expected comma-separated tokens such as the output of `openssl rand -hex 32`"
                ));
            }
            crate::telemetry::register(token);
            tokens.push(token.as_bytes().into());
        }
        Ok(IngestTokens(tokens.into()))
    }

    /// True when no token is configured: ingestion is disabled.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The index of the configured token equal to `candidate`, compared in constant time with
    /// every configured token (no early exit; only a difference in length returns early per
    /// token, which reveals no content).
    fn find(&self, candidate: &[u8]) -> Option<usize> {
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, token) in self.0.iter().enumerate() {
            let equal = token.as_ref().ct_eq(candidate);
            index.conditional_assign(&(i as u32), equal);
            found |= equal;
        }
        bool::from(found).then_some(index as usize)
    }

    /// The index of the token that authorizes a request with `headers` (for its rate limit),
    /// or the answer: 403 when no token is configured (ingestion disabled, whatever the
    /// request holds), 401 when it has no bearer token or one that is not configured.
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<usize, ApiError> {
        if self.is_empty() {
            return Err(ApiError::Forbidden(
                "ingestion disabled: set INGEST_TOKENS".to_owned(),
            ));
        }
        let Some(given) = bearer(headers) else {
            return Err(ApiError::Unauthorized {
                message: "a bearer token is required: Authorization: Bearer <token>".to_owned(),
                invalid_token: false,
            });
        };
        self.find(given).ok_or_else(|| ApiError::Unauthorized {
            message: "the bearer token is not valid".to_owned(),
            invalid_token: true,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

impl fmt::Debug for IngestTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IngestTokens({} × ***)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "token-aaaaaaaaaaaaaaaa";
    const B: &str = "token-bbbbbbbbbbbbbbbb";

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn tokens_are_parsed_checked_and_never_shown() {
        let tokens = IngestTokens::parse(&format!(" {A} ,, {B},")).unwrap();
        assert_eq!(tokens.len(), 2);
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("token-"), "{shown}");
        assert!(IngestTokens::parse("").unwrap().is_empty());
        for bad in [
            "tiny9",
            "token with a space inside it",
            "tökentökentökentöken",
        ] {
            let err = IngestTokens::parse(bad).unwrap_err();
            assert!(!err.contains(bad), "{err}");
        }
        assert_eq!(
            crate::telemetry::redact(&format!("x {B} y")),
            "x *** y",
            "registered with the log mask"
        );
    }

    #[test]
    fn the_matching_token_is_found_whatever_its_position() {
        let tokens = IngestTokens::parse(&format!("{A},{B}")).unwrap();
        assert_eq!(
            tokens.authorize(&headers(&format!("Bearer {A}"))).ok(),
            Some(0)
        );
        assert_eq!(
            tokens.authorize(&headers(&format!("bearer  {B} "))).ok(),
            Some(1)
        );
        for wrong in [
            format!("Bearer {A}x"),
            "Bearer".to_owned(),
            format!("Basic {A}"),
            "Bearer token-aaaaaaaaaaaaaaa".to_owned(),
        ] {
            assert!(
                matches!(
                    tokens.authorize(&headers(&wrong)),
                    Err(ApiError::Unauthorized { .. })
                ),
                "{wrong}"
            );
        }
        assert!(matches!(
            IngestTokens::default().authorize(&headers(&format!("Bearer {A}"))),
            Err(ApiError::Forbidden(_))
        ));
        assert!(
            matches!(
                IngestTokens::default().authorize(&HeaderMap::new()),
                Err(ApiError::Forbidden(_))
            ),
            "ingestion disabled is a 403 even without credentials"
        );
    }
}
