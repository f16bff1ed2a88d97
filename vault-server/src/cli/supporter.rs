//! `vaultctl supporter ...`: upsert, update (rectification), get, lookup, tag, untag and
//! search, under `--purpose`. Replies are printed as [`supporter_json`]: only the fields the
//! reply carries.

use clap::{Args as ClapArgs, Subcommand};
use vault_proto::v1 as pb;

use super::CtlError;
use crate::client::Session;
use crate::client::output::supporter_json;

#[derive(Debug, Subcommand)]
pub(crate) enum SupporterCommand {
    /// Create a supporter, or merge into the one with the same email or phone.
    Upsert(Box<UpsertArgs>),
    /// Change the given fields of a supporter (rectification, GDPR art. 16): only the
    /// fields passed (and those named by --clear) change; --tag and --custom replace the
    /// whole list.
    Update(Box<UpdateArgs>),
    /// Read a supporter by id.
    Get {
        /// Supporter id.
        id: String,
        /// Comma-separated field paths to return (default: all).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
    },
    /// Find a supporter by email or phone.
    Lookup {
        /// Email (any casing).
        #[arg(long, conflicts_with = "phone", required_unless_present = "phone")]
        email: Option<String>,
        /// Phone (any format; default region FR).
        #[arg(long)]
        phone: Option<String>,
    },
    /// Add tags to a supporter.
    Tag {
        /// Supporter id.
        id: String,
        /// Tags to add.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags from a supporter.
    Untag {
        /// Supporter id.
        id: String,
        /// Tags to remove.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// A consent-filtered segment under --purpose, as JSON lines.
    Search(SearchArgs),
}

#[derive(Debug, ClapArgs)]
pub(crate) struct SearchArgs {
    /// Supporters carrying this tag (repeatable: every one of them).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Supporters carrying at least one of these tags (repeatable).
    #[arg(long = "any-tag")]
    any_tags: Vec<String>,
    /// Supporters whose postcode is one of these (repeatable).
    #[arg(long = "postcode")]
    postcodes: Vec<String>,
    /// Narrow consent and objection to one channel of the purpose.
    #[arg(long)]
    channel: Option<String>,
    /// Comma-separated field paths to return (default: the purpose's fields).
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Supporters per page (server default 1000, at most 10000).
    #[arg(long)]
    page_size: Option<u32>,
    /// Continue from this page token (printed on stderr after a page).
    #[arg(long)]
    page_token: Option<String>,
    /// Read every page.
    #[arg(long)]
    all_pages: bool,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct UpsertArgs {
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    phone: Option<String>,
    #[arg(long)]
    given_name: Option<String>,
    #[arg(long)]
    family_name: Option<String>,
    #[arg(long)]
    line1: Option<String>,
    #[arg(long)]
    line2: Option<String>,
    #[arg(long)]
    postcode: Option<String>,
    #[arg(long)]
    city: Option<String>,
    #[arg(long)]
    country: Option<String>,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Custom field as key=value (repeatable).
    #[arg(long = "custom", value_parser = parse_key_value)]
    custom: Vec<(String, String)>,
    /// Where the data came from, e.g. form:petition-2026.
    #[arg(long)]
    source: Option<String>,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct UpdateArgs {
    /// Supporter id.
    id: String,
    #[command(flatten)]
    fields: UpsertArgs,
    /// A field to empty (repeatable), by its path: phone, address.line2, tags, custom...
    #[arg(long = "clear", value_name = "FIELD")]
    clear: Vec<String>,
    /// The rights request this rectification answers, recorded in the access log.
    #[arg(long)]
    request_ref: Option<String>,
}

impl UpsertArgs {
    /// The supporter these flags describe, and the paths of the fields they set.
    fn into_supporter(self) -> (pb::Supporter, Vec<String>) {
        let mut paths = Vec::new();
        let mut set = |value: Option<String>, path: &str| {
            if value.is_some() {
                paths.push(path.to_owned());
            }
            value.unwrap_or_default()
        };
        let supporter = pb::Supporter {
            email: set(self.email, "email"),
            phone: set(self.phone, "phone"),
            given_name: set(self.given_name, "given_name"),
            family_name: set(self.family_name, "family_name"),
            address: Some(pb::Address {
                line1: set(self.line1, "address.line1"),
                line2: set(self.line2, "address.line2"),
                postcode: set(self.postcode, "address.postcode"),
                city: set(self.city, "address.city"),
                country: set(self.country, "address.country"),
            }),
            source: set(self.source, "source"),
            ..Default::default()
        };
        if !self.tags.is_empty() {
            paths.push("tags".into());
        }
        if !self.custom.is_empty() {
            paths.push("custom".into());
        }
        (
            pb::Supporter {
                tags: self.tags,
                custom: self.custom.into_iter().collect(),
                ..supporter
            },
            paths,
        )
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), &'static str> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or("expected key=value")
}

/// Runs a `supporter` command under the session's purpose.
pub(crate) async fn run(session: &Session, command: SupporterCommand) -> Result<String, CtlError> {
    let mut client = session.supporters();
    let reply = match command {
        SupporterCommand::Search(a) => return search(session, a).await,
        SupporterCommand::Update(a) => {
            let UpdateArgs {
                id,
                fields,
                clear,
                request_ref,
            } = *a;
            let (supporter, mut paths) = fields.into_supporter();
            for c in clear {
                let c = c.trim().to_owned();
                if paths.contains(&c) {
                    return Err(CtlError::SetAndCleared { field: c });
                }
                paths.push(c);
            }
            if paths.is_empty() {
                return Err(CtlError::NothingToChange);
            }
            client
                .update(session.request(pb::UpdateRequest {
                    id,
                    supporter: Some(supporter),
                    update_mask: Some(prost_types::FieldMask { paths }),
                    request_ref: request_ref.unwrap_or_default(),
                })?)
                .await
        }
        SupporterCommand::Upsert(a) => {
            let (supporter, _) = a.into_supporter();
            let r = client
                .upsert(session.request(pb::UpsertRequest {
                    supporter: Some(supporter),
                    consents: Vec::new(),
                })?)
                .await?
                .into_inner();
            return Ok(serde_json::json!({ "id": r.id, "created": r.created }).to_string());
        }
        SupporterCommand::Get { id, fields } => {
            client
                .get(session.request(pb::GetRequest {
                    id,
                    fields:
                        (!fields.is_empty()).then_some(prost_types::FieldMask { paths: fields }),
                })?)
                .await
        }
        SupporterCommand::Lookup { email, phone } => {
            let key = match (email, phone) {
                (Some(e), _) => pb::lookup_request::Key::Email(e),
                (None, Some(p)) => pb::lookup_request::Key::Phone(p),
                (None, None) => return Err(CtlError::Missing("--email or --phone")),
            };
            client
                .lookup(session.request(pb::LookupRequest { key: Some(key) })?)
                .await
        }
        SupporterCommand::Tag { id, tags } => {
            client
                .tag(session.request(pb::TagRequest { id, tags })?)
                .await
        }
        SupporterCommand::Untag { id, tags } => {
            client
                .untag(session.request(pb::UntagRequest { id, tags })?)
                .await
        }
    };
    Ok(supporter_json(&reply?.into_inner()).to_string())
}

/// `supporter search`: JSON lines as the pages arrive; the next page's token on stderr.
async fn search(session: &Session, a: SearchArgs) -> Result<String, CtlError> {
    let request = pb::SearchRequest {
        tags_all: a.tags,
        tags_any: a.any_tags,
        postcodes: a.postcodes,
        consent_purpose: String::new(),
        consent_channel: a.channel.unwrap_or_default(),
        fields: (!a.fields.is_empty()).then_some(prost_types::FieldMask { paths: a.fields }),
        page_size: a.page_size.unwrap_or(0),
        page_token: a.page_token.unwrap_or_default(),
    };
    let mut out = std::io::stdout();
    let seen = session.search(request, a.all_pages, &mut out).await?;
    if let Some(next) = seen.next_page_token {
        eprintln!(
            "vaultctl: {} supporters on this page; more with --page-token {next} (or \
             --all-pages)",
            seen.supporters
        );
    }
    Ok(String::new())
}
