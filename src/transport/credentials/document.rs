//! The credentials JSON document that both the container endpoints (ECS,
//! EKS Pod Identity) and EC2 instance metadata serve, and the RFC 3339
//! expiration timestamps all temporary credentials carry.
//!
//! Parse errors describe the shape of the problem only: the body being
//! parsed holds the secret, so neither it nor serde's value-quoting messages
//! go into an error.

use std::time::SystemTime;

use aws_smithy_types::date_time::{DateTime, Format};
use serde::Deserialize;

use super::Credentials;

/// `{"Code", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`;
/// `Code` is only sent by IMDS, `Expiration` is absent for long-lived keys.
#[derive(Deserialize)]
struct CredentialsDocument {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "AccessKeyId")]
    access_key_id: Option<String>,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: Option<String>,
    #[serde(rename = "Token")]
    token: Option<String>,
    #[serde(rename = "Expiration")]
    expiration: Option<String>,
}

/// Parses a successful (2xx) credentials response. The error says what is
/// wrong without quoting the body.
pub(crate) fn parse_credentials_json(body: &str) -> Result<Credentials, String> {
    let doc: CredentialsDocument =
        serde_json::from_str(body).map_err(|e| format!("the response {}", not_a_document(&e)))?;
    if let Some(code) = doc.code.as_deref() {
        if code != "Success" {
            let message = doc.message.as_deref().unwrap_or("");
            return Err(format!("the endpoint reported Code {code:?} {message}")
                .trim_end()
                .to_owned());
        }
    }
    let access_key_id = required(doc.access_key_id, "the response", "AccessKeyId")?;
    let secret_access_key = required(doc.secret_access_key, "the response", "SecretAccessKey")?;
    let token = doc.token.filter(|t| !t.is_empty());
    let expiry = doc
        .expiration
        .as_deref()
        .map(parse_expiration)
        .transpose()?;
    Ok(Credentials::new(
        access_key_id,
        secret_access_key,
        token,
        expiry,
    ))
}

/// "is not a credentials JSON document (…)", from serde_json's category and
/// place of the error only: its Display can quote values.
pub(crate) fn not_a_document(error: &serde_json::Error) -> String {
    format!(
        "is not a credentials JSON document ({:?} error at line {} column {})",
        error.classify(),
        error.line(),
        error.column()
    )
}

/// A field that must be present and not blank; the error says which one
/// `source` lacks.
pub(crate) fn required(value: Option<String>, source: &str, field: &str) -> Result<String, String> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("{source} lacks {field}"))
}

/// Parses an RFC 3339 timestamp such as `2024-05-01T12:00:00Z` (an offset
/// such as `+02:00` is accepted too).
pub(crate) fn parse_expiration(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    DateTime::from_str(text, Format::DateTimeWithOffset)
        .ok()
        .and_then(|dt| SystemTime::try_from(dt).ok())
        .ok_or_else(|| format!("Expiration {text:?} is not an RFC 3339 timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn parses_imds_and_ecs_documents() {
        let body = r#"{"Code":"Success","LastUpdated":"2024-01-01T00:00:00Z","Type":"AWS-HMAC",
            "AccessKeyId":"ASIA1","SecretAccessKey":"s3cr3t","Token":"tok","Expiration":"2024-05-01T12:00:00Z"}"#;
        let creds = parse_credentials_json(body).unwrap();
        assert_eq!(creds.access_key_id(), "ASIA1");
        assert_eq!(creds.session_token(), Some("tok"));
        assert_eq!(
            creds.expiry(),
            Some(UNIX_EPOCH + Duration::from_secs(1_714_564_800))
        );
        let ecs = r#"{"AccessKeyId":"ASIA2","SecretAccessKey":"x","Token":"t","Expiration":"2024-05-01T12:00:00.5+00:00","RoleArn":"arn"}"#;
        assert!(parse_credentials_json(ecs).is_ok());
    }

    #[test]
    fn errors_never_quote_the_body() {
        let bad = r#"{"AccessKeyId":"ASIA1","SecretAccessKey":"TOPSECRET","Token":7}"#;
        let err = parse_credentials_json(bad).unwrap_err();
        assert!(!err.contains("TOPSECRET"), "{err}");
        let truncated = r#"{"AccessKeyId":"ASIA1","SecretAccessKey":"TOPSECRET"#;
        let err = parse_credentials_json(truncated).unwrap_err();
        assert!(!err.contains("TOPSECRET"), "{err}");
        let missing = r#"{"AccessKeyId":"ASIA1","Token":"TOPSECRET"}"#;
        let err = parse_credentials_json(missing).unwrap_err();
        assert!(
            err.contains("SecretAccessKey") && !err.contains("TOPSECRET"),
            "{err}"
        );
        let failed = r#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"denied"}"#;
        let err = parse_credentials_json(failed).unwrap_err();
        assert!(err.contains("AssumeRoleUnauthorizedAccess"), "{err}");
        let err = parse_credentials_json(
            r#"{"AccessKeyId":"A","SecretAccessKey":"S","Expiration":"soon"}"#,
        )
        .unwrap_err();
        assert!(err.contains("soon"), "{err}");
    }
}
