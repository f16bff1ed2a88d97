//! A session with the daemon: the connection and the metadata every request carries, with
//! the service clients and the calls that take more than one request and reply (a search
//! that follows page tokens, a watch that stops once caught up).

use std::io::Write;
use std::time::Duration;

use tonic::Request;
use tonic::transport::Channel;
use vault_proto::metadata::NEXT_PAGE_TOKEN;
use vault_proto::v1 as pb;
use vault_proto::v1::admin_client::AdminClient;
use vault_proto::v1::audit_client::AuditClient;
use vault_proto::v1::consent_client::ConsentClient;
use vault_proto::v1::rights_client::RightsClient;
use vault_proto::v1::supporters_client::SupportersClient;

use super::output::{change, supporter_json, write_line};
use super::{CallMetadata, Error};

/// A connection and the credentials (and purpose) its requests carry.
#[derive(Debug, Clone)]
pub struct Session {
    channel: Channel,
    metadata: CallMetadata,
}

impl Session {
    /// Calls over `channel` carrying `metadata`.
    pub fn new(channel: Channel, metadata: CallMetadata) -> Self {
        Self { channel, metadata }
    }

    /// The same connection, declaring `purpose` instead (none: no `x-vault-purpose`).
    pub fn with_purpose(&self, purpose: Option<&str>) -> Self {
        Self {
            channel: self.channel.clone(),
            metadata: self.metadata.with_purpose(purpose),
        }
    }

    /// The connection.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// `message` with this session's metadata.
    pub fn request<T>(&self, message: T) -> Result<Request<T>, Error> {
        self.metadata.request(message)
    }

    /// The `Supporters` service.
    pub fn supporters(&self) -> SupportersClient<Channel> {
        SupportersClient::new(self.channel.clone())
    }

    /// The `Consent` service.
    pub fn consent(&self) -> ConsentClient<Channel> {
        ConsentClient::new(self.channel.clone())
    }

    /// The `Rights` service.
    pub fn rights(&self) -> RightsClient<Channel> {
        RightsClient::new(self.channel.clone())
    }

    /// The `Audit` service.
    pub fn audit(&self) -> AuditClient<Channel> {
        AuditClient::new(self.channel.clone())
    }

    /// The `Admin` service.
    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// `Supporters.Search`, one JSON line per supporter on `out`; with `all_pages`, follows
    /// the next-page token of each page until the last.
    pub async fn search<W: Write>(
        &self,
        mut request: pb::SearchRequest,
        all_pages: bool,
        out: &mut W,
    ) -> Result<SearchOutcome, Error> {
        let mut client = self.supporters();
        let mut outcome = SearchOutcome::default();
        loop {
            let reply = client.search(self.request(request.clone())?).await?;
            let next = reply
                .metadata()
                .get(NEXT_PAGE_TOKEN)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned);
            let mut stream = reply.into_inner();
            outcome.pages += 1;
            while let Some(s) = stream.message().await? {
                if !write_line(out, &supporter_json(&s).to_string())? {
                    return Ok(outcome);
                }
                outcome.supporters += 1;
            }
            match next {
                Some(t) if all_pages => request.page_token = t,
                next => {
                    outcome.next_page_token = next;
                    return Ok(outcome);
                }
            }
        }
    }

    /// `Supporters.Watch` from `cursor`, one line per event on `out`. With `follow`, runs
    /// until the stream ends; otherwise stops once caught up: no event for `idle`.
    pub async fn watch<W: Write>(
        &self,
        cursor: String,
        follow: bool,
        idle: Duration,
        json: bool,
        out: &mut W,
    ) -> Result<WatchOutcome, Error> {
        let mut stream = self
            .supporters()
            .watch(self.request(pb::WatchRequest { cursor })?)
            .await?
            .into_inner();
        let mut outcome = WatchOutcome::default();
        loop {
            let next = if follow {
                stream.message().await
            } else {
                match tokio::time::timeout(idle, stream.message()).await {
                    Ok(next) => next,
                    Err(_) => return Ok(outcome),
                }
            };
            match next? {
                Some(e) => {
                    if !write_line(out, &change(&e, json))? {
                        return Ok(outcome);
                    }
                    outcome.events += 1;
                    outcome.cursor = Some(e.cursor);
                }
                None => return Ok(outcome),
            }
        }
    }
}

/// What a search printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchOutcome {
    /// Supporters printed.
    pub supporters: u64,
    /// Pages read.
    pub pages: u64,
    /// The token of the page after the last one read (only when not reading every page).
    pub next_page_token: Option<String>,
}

/// What a watch saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOutcome {
    /// Events printed.
    pub events: u64,
    /// The cursor of the last event printed (resume from it).
    pub cursor: Option<String>,
}
