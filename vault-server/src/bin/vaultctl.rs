//! `vaultctl`: the vault's command line. Talks to a running daemon over gRPC.
//!
//! Address and token come from flags, the environment (`VAULT_ADDR`, `VAULT_TOKEN`), or the
//! admin token file the daemon wrote on first start. Output is JSON on stdout; failures
//! print one line on stderr and exit non-zero.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand};
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use vault_proto::v1 as pb;
use vault_proto::v1::supporters_client::SupportersClient;
use vault_server::config::{ADMIN_TOKEN_FILE, DEFAULT_DATA_DIR, DEFAULT_LISTEN};

#[derive(Debug, Parser)]
#[command(
    name = "vaultctl",
    version,
    about = "Command line for the vault daemon"
)]
struct Cli {
    /// Daemon address.
    #[arg(long, env = "VAULT_ADDR", default_value_t = format!("http://{DEFAULT_LISTEN}"), global = true)]
    addr: String,
    /// Bearer token (prefer VAULT_TOKEN or a token file: flags are visible to other users).
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// File holding the token (default: <data-dir>/admin.token).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// The daemon's data directory, to find the admin token file.
    #[arg(long, env = "VAULT_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Supporter records.
    #[command(subcommand)]
    Supporter(SupporterCommand),
}

#[derive(Debug, Subcommand)]
enum SupporterCommand {
    /// Create a supporter, or merge into the one with the same email or phone.
    Upsert(Box<UpsertArgs>),
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
}

#[derive(Debug, ClapArgs)]
struct UpsertArgs {
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

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected key=value".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vaultctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vaultctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn token(cli: &Cli) -> Result<String, String> {
    if let Some(t) = &cli.token {
        return Ok(t.trim().to_owned());
    }
    let path = cli
        .token_file
        .clone()
        .unwrap_or_else(|| cli.data_dir.join(ADMIN_TOKEN_FILE));
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .map_err(|e| {
            format!(
                "no token: pass --token, set VAULT_TOKEN, or make {} readable ({e})",
                path.display()
            )
        })
}

fn with_token<T>(message: T, token: &str) -> Result<Request<T>, String> {
    let mut req = Request::new(message);
    let value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "the token contains characters that cannot be sent".to_owned())?;
    req.metadata_mut().insert("authorization", value);
    Ok(req)
}

fn status_line(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

async fn run(cli: Cli) -> Result<String, String> {
    let token = token(&cli)?;
    let channel = Channel::from_shared(cli.addr.clone())
        .map_err(|e| format!("bad address {}: {e}", cli.addr))?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", cli.addr))?;
    let mut client = SupportersClient::new(channel);
    let reply = match cli.command {
        Command::Supporter(SupporterCommand::Upsert(a)) => {
            let supporter = pb::Supporter {
                email: a.email.unwrap_or_default(),
                phone: a.phone.unwrap_or_default(),
                given_name: a.given_name.unwrap_or_default(),
                family_name: a.family_name.unwrap_or_default(),
                address: Some(pb::Address {
                    line1: a.line1.unwrap_or_default(),
                    line2: a.line2.unwrap_or_default(),
                    postcode: a.postcode.unwrap_or_default(),
                    city: a.city.unwrap_or_default(),
                    country: a.country.unwrap_or_default(),
                }),
                tags: a.tags,
                custom: a.custom.into_iter().collect(),
                source: a.source.unwrap_or_default(),
                ..Default::default()
            };
            let r = client
                .upsert(with_token(
                    pb::UpsertRequest {
                        supporter: Some(supporter),
                    },
                    &token,
                )?)
                .await
                .map_err(status_line)?
                .into_inner();
            return Ok(serde_json::json!({ "id": r.id, "created": r.created }).to_string());
        }
        Command::Supporter(SupporterCommand::Get { id, fields }) => {
            client
                .get(with_token(
                    pb::GetRequest {
                        id,
                        fields: (!fields.is_empty())
                            .then_some(prost_types::FieldMask { paths: fields }),
                    },
                    &token,
                )?)
                .await
        }
        Command::Supporter(SupporterCommand::Lookup { email, phone }) => {
            let key = match (email, phone) {
                (Some(e), _) => pb::lookup_request::Key::Email(e),
                (None, Some(p)) => pb::lookup_request::Key::Phone(p),
                (None, None) => return Err("pass --email or --phone".into()),
            };
            client
                .lookup(with_token(pb::LookupRequest { key: Some(key) }, &token)?)
                .await
        }
        Command::Supporter(SupporterCommand::Tag { id, tags }) => {
            client
                .tag(with_token(pb::TagRequest { id, tags }, &token)?)
                .await
        }
        Command::Supporter(SupporterCommand::Untag { id, tags }) => {
            client
                .untag(with_token(pb::UntagRequest { id, tags }, &token)?)
                .await
        }
    };
    let s = reply.map_err(status_line)?.into_inner();
    Ok(supporter_json(&s).to_string())
}

fn supporter_json(s: &pb::Supporter) -> serde_json::Value {
    let ts = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| t.seconds);
    let a = s.address.clone().unwrap_or_default();
    serde_json::json!({
        "id": s.id,
        "given_name": s.given_name,
        "family_name": s.family_name,
        "email": s.email,
        "phone": s.phone,
        "address": {
            "line1": a.line1, "line2": a.line2, "postcode": a.postcode,
            "city": a.city, "country": a.country,
        },
        "tags": s.tags,
        "custom": s.custom,
        "source": s.source,
        "created_at_unix": ts(&s.created_at),
        "updated_at_unix": ts(&s.updated_at),
    })
}
