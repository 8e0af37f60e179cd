//! SigV4 signing of a complete request through aws-sigv4.

use std::time::SystemTime;

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::error::{Error, Result};
use crate::transport::credentials::Credentials;

/// Adds `X-Amz-Date`, `Authorization` and (for temporary credentials)
/// `X-Amz-Security-Token` to `request`, signing its method, URI, headers and
/// body for `service` in `region` at `time`.
pub fn sign_request<B: AsRef<[u8]>>(
    request: &mut http::Request<B>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<()> {
    let identity: Identity = aws_credential_types::Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        credentials.session_token().map(str::to_owned),
        credentials.expiry(),
        "kcheck",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| Error::Config(format!("signing parameters: {e}")))?
        .into();
    let uri = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or_default()));
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers,
        SignableBody::Bytes(request.body().as_ref()),
    )
    .map_err(|e| Error::Config(format!("request cannot be signed: {e}")))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| Error::Config(format!("signing failed: {e}")))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}
