//! The configuration file (`--config FILE`, `WECHAT_QR_CONFIG`): TOML with the server
//! settings at the top level — each named like its flag, `grpc_addr = "…"` for
//! `--grpc-addr` — plus `[[accounts]]` and `[[clients]]`. A top-level setting is used only
//! where neither a flag nor its environment variable gave one, so the environment still
//! overrides the file; the file is applied by handing its values to the same flag parser,
//! so each is validated exactly as its flag is. Secrets never need to sit in the file:
//! every secret field also takes `<field>_file` (read from a file, for Kubernetes secrets)
//! and `<field>_env` (read from a named variable). Every error names its key path.
//! `[[clients]]` are checked here for form; `src/grpc/auth.rs` enforces them.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::{Path, PathBuf},
};

use clap::parser::ValueSource;
use serde::Deserialize;

use super::{EncryptMode, ForwardFailure, MAX_FORWARD_TIMEOUT_MS, ReplyRule, sharing};
use crate::secret::Secret;

/// Why a configuration file cannot be used; the message names the key path.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not TOML, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, with the line.
        message: String,
    },
    /// A key is wrong: unknown, misplaced, or its value is invalid.
    #[error("{path}: {key}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The key path, such as `accounts[1].encoding_aes_key`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Settings that belong to an account, refused at the top level of the file.
const ACCOUNT_KEYS: &[&str] = &[
    "app_id",
    "app_secret",
    "token",
    "previous_token",
    "encoding_aes_key",
    "previous_encoding_aes_key",
    "encrypt_mode",
    "account_id",
    "api_base",
    "mp_base",
    "permanent_budget",
    "forward_url",
    "forward_scans",
    "forward_failure",
    "forward_timeout_ms",
];

/// A secret given inline, from a file, or from a named environment variable.
#[derive(Debug, Default)]
struct SecretSource {
    value: Option<String>,
    file: Option<PathBuf>,
    env: Option<String>,
}

/// One `[[accounts]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFile {
    app_id: String,
    app_secret: Option<String>,
    app_secret_file: Option<PathBuf>,
    app_secret_env: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    encoding_aes_key: Option<String>,
    encoding_aes_key_file: Option<PathBuf>,
    encoding_aes_key_env: Option<String>,
    previous_token: Option<String>,
    previous_token_file: Option<PathBuf>,
    previous_token_env: Option<String>,
    previous_encoding_aes_key: Option<String>,
    previous_encoding_aes_key_file: Option<PathBuf>,
    previous_encoding_aes_key_env: Option<String>,
    encrypt_mode: Option<String>,
    original_id: Option<String>,
    api_base: Option<String>,
    mp_base: Option<String>,
    permanent_budget: Option<u64>,
    forward_url: Option<String>,
    forward_scans: Option<bool>,
    forward_failure: Option<String>,
    forward_timeout_ms: Option<u64>,
    /// Read entry by entry, so an error names `replies[N]`.
    replies: Option<Vec<toml::Value>>,
}

/// One `[[clients]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    name: String,
    token_sha256: Option<String>,
    subject: Option<String>,
    methods: Option<Vec<String>>,
    accounts: Option<Vec<String>>,
    permanent: Option<bool>,
}

/// An account from the file, its secrets resolved.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// The AppID.
    pub app_id: String,
    /// The AppSecret.
    pub app_secret: Secret,
    /// The webhook token.
    pub token: Option<Secret>,
    /// The EncodingAESKey.
    pub encoding_aes_key: Option<Secret>,
    /// The previous webhook token (rotation).
    pub previous_token: Option<Secret>,
    /// The previous EncodingAESKey (rotation).
    pub previous_encoding_aes_key: Option<Secret>,
    /// Which pushes are accepted.
    pub encrypt_mode: Option<EncryptMode>,
    /// The account's original ID (`gh_…`).
    pub original_id: Option<String>,
    /// Base URL of WeChat's API.
    pub api_base: Option<String>,
    /// Base URL of `showqrcode`.
    pub mp_base: Option<String>,
    /// Permanent codes this service may still mint for the account.
    pub permanent_budget: Option<u64>,
    /// The existing handler pushes that are not QR scans are forwarded to.
    pub forward_url: Option<url::Url>,
    /// Forward QR scans too.
    pub forward_scans: Option<bool>,
    /// The answer when a forward fails.
    pub forward_failure: Option<ForwardFailure>,
    /// Deadline of one forward, in milliseconds.
    pub forward_timeout_ms: Option<u64>,
    /// Passive replies to scans (`[[accounts.replies]]`).
    pub replies: Vec<ReplyRule>,
}

impl AccountConfig {
    /// An account with these credentials and nothing else set (the webhook token is
    /// still required to serve it).
    pub fn new(app_id: &str, app_secret: &str) -> Self {
        Self {
            app_id: app_id.to_owned(),
            app_secret: Secret::new(app_secret),
            token: None,
            encoding_aes_key: None,
            previous_token: None,
            previous_encoding_aes_key: None,
            encrypt_mode: None,
            original_id: None,
            api_base: None,
            mp_base: None,
            permanent_budget: None,
            forward_url: None,
            forward_scans: None,
            forward_failure: None,
            forward_timeout_ms: None,
            replies: Vec::new(),
        }
    }
}

/// A caller from the file.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Its name, for logs and metrics.
    pub name: String,
    /// SHA-256 of its bearer token, lowercase hex; `None` for a client known only by
    /// its certificate.
    pub token_sha256: Option<String>,
    /// The common name (CN) of its TLS client certificate, checked against `client_ca`.
    pub subject: Option<String>,
    /// RPCs it may call; `None` = all.
    pub methods: Option<Vec<String>>,
    /// AppIDs it may act for; `None` = all.
    pub accounts: Option<Vec<String>>,
    /// Whether it may mint permanent codes.
    pub permanent: bool,
}

/// A configuration file, read and checked.
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    /// Where it was read from.
    pub path: PathBuf,
    /// Top-level server settings: flag id → value as text.
    pub server: BTreeMap<String, String>,
    /// `[[accounts]]`.
    pub accounts: Vec<AccountConfig>,
    /// `[[clients]]`.
    pub clients: Vec<ClientConfig>,
    /// The top-level settings that took effect (no flag or environment variable set them).
    pub applied: std::collections::BTreeSet<String>,
}

/// The RPCs a client's `methods` may name.
pub const METHODS: &[&str] = &[
    "CreateTicket",
    "GetImage",
    "StreamEvents",
    // Consumer groups: members need ConsumeGroup (or ReceiveGroup and AckGroupEvents);
    // the rest is for whoever operates the groups.
    "CreateGroup",
    "ListGroups",
    "DeleteGroup",
    "SeekGroup",
    "ConsumeGroup",
    "ReceiveGroup",
    "AckGroupEvents",
    "ListDeadLetters",
    "ReplayDeadLetters",
];

impl FileConfig {
    /// Reads and checks `path`. `server_ids` are the flag ids a top-level key may name.
    pub fn load(path: &Path, server_ids: &[String]) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let key_error = |key: String, reason: String| FileError::Key {
            path: path.to_owned(),
            key,
            reason,
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| FileError::Parse {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                })?;
        let accounts = match table.remove("accounts") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items,
            Some(_) => {
                return Err(key_error(
                    "accounts".into(),
                    "must be an array of tables: [[accounts]]".into(),
                ));
            }
        };
        let clients = match table.remove("clients") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items,
            Some(_) => {
                return Err(key_error(
                    "clients".into(),
                    "must be an array of tables: [[clients]]".into(),
                ));
            }
        };
        let mut server = BTreeMap::new();
        for (key, value) in table {
            if ACCOUNT_KEYS.contains(&key.as_str()) {
                return Err(key_error(
                    key,
                    "an account setting: put it in an [[accounts]] table".into(),
                ));
            }
            if key == "config" || !server_ids.contains(&key) {
                return Err(key_error(key, "unknown setting".into()));
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(key_error(key, "must be a string, number or boolean".into())),
            };
            server.insert(key, text);
        }
        let mut config = Self {
            path: path.to_owned(),
            server,
            ..Self::default()
        };
        for (i, item) in accounts.into_iter().enumerate() {
            let at = |field: &str| format!("accounts[{i}].{field}");
            let account: AccountFile = item.try_into().map_err(|e: toml::de::Error| {
                key_error(format!("accounts[{i}]"), e.message().to_owned())
            })?;
            let resolve = |field: &str, source: SecretSource| {
                resolve_secret(&source).map_err(|reason| key_error(at(field), reason))
            };
            let app_secret = resolve(
                "app_secret",
                SecretSource {
                    value: account.app_secret,
                    file: account.app_secret_file,
                    env: account.app_secret_env,
                },
            )?
            .ok_or_else(|| {
                key_error(
                    at("app_secret"),
                    "required (or app_secret_file, app_secret_env)".into(),
                )
            })?;
            let token = resolve(
                "token",
                SecretSource {
                    value: account.token,
                    file: account.token_file,
                    env: account.token_env,
                },
            )?;
            let encoding_aes_key = resolve(
                "encoding_aes_key",
                SecretSource {
                    value: account.encoding_aes_key,
                    file: account.encoding_aes_key_file,
                    env: account.encoding_aes_key_env,
                },
            )?;
            let previous_token = resolve(
                "previous_token",
                SecretSource {
                    value: account.previous_token,
                    file: account.previous_token_file,
                    env: account.previous_token_env,
                },
            )?;
            let previous_encoding_aes_key = resolve(
                "previous_encoding_aes_key",
                SecretSource {
                    value: account.previous_encoding_aes_key,
                    file: account.previous_encoding_aes_key_file,
                    env: account.previous_encoding_aes_key_env,
                },
            )?;
            if account.app_id.trim().is_empty() {
                return Err(key_error(at("app_id"), "must not be empty".into()));
            }
            if config
                .accounts
                .iter()
                .any(|a: &AccountConfig| a.app_id == account.app_id)
            {
                return Err(key_error(
                    at("app_id"),
                    format!("{} is configured twice", account.app_id),
                ));
            }
            for (field, key) in [
                ("encoding_aes_key", &encoding_aes_key),
                ("previous_encoding_aes_key", &previous_encoding_aes_key),
            ] {
                if let Some(key) = key
                    && key.expose().chars().count() != 43
                {
                    return Err(key_error(at(field), "must be 43 characters".into()));
                }
            }
            for (field, token) in [("token", &token), ("previous_token", &previous_token)] {
                if let Some(token) = token
                    && !(3..=32).contains(&token.expose().chars().count())
                {
                    return Err(key_error(at(field), "must be 3 to 32 characters".into()));
                }
            }
            let encrypt_mode = match account.encrypt_mode.as_deref() {
                None => None,
                Some("plaintext") => Some(EncryptMode::Plaintext),
                Some("compatible") => Some(EncryptMode::Compatible),
                Some("safe") => Some(EncryptMode::Safe),
                Some(other) => {
                    return Err(key_error(
                        at("encrypt_mode"),
                        format!("{other:?} is not one of plaintext, compatible, safe"),
                    ));
                }
            };
            for (field, url) in [
                ("api_base", &account.api_base),
                ("mp_base", &account.mp_base),
            ] {
                if let Some(url) = url
                    && let Err(e) = url::Url::parse(url)
                {
                    return Err(key_error(at(field), format!("not a URL: {e}")));
                }
            }
            let forward_url = match &account.forward_url {
                None => None,
                Some(url) => match url::Url::parse(url) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                    Ok(_) => {
                        return Err(key_error(
                            at("forward_url"),
                            "must be an http:// or https:// URL".into(),
                        ));
                    }
                    Err(e) => return Err(key_error(at("forward_url"), format!("not a URL: {e}"))),
                },
            };
            if account.forward_scans == Some(true) && forward_url.is_none() {
                return Err(key_error(at("forward_scans"), "needs forward_url".into()));
            }
            let forward_failure = match account.forward_failure.as_deref() {
                None => None,
                Some("retry") => Some(ForwardFailure::Retry),
                Some("success") => Some(ForwardFailure::Success),
                Some(other) => {
                    return Err(key_error(
                        at("forward_failure"),
                        format!("{other:?} is not one of retry, success"),
                    ));
                }
            };
            if let Some(ms) = account.forward_timeout_ms
                && !(1..=MAX_FORWARD_TIMEOUT_MS).contains(&ms)
            {
                return Err(key_error(
                    at("forward_timeout_ms"),
                    format!("must be 1 to {MAX_FORWARD_TIMEOUT_MS}: WeChat waits 5 s"),
                ));
            }
            let mut replies = Vec::new();
            for (j, rule) in account.replies.into_iter().flatten().enumerate() {
                let rule = sharing::reply_rule(rule).map_err(|(field, reason)| {
                    let entry = at(&format!("replies[{j}]"));
                    let key = if field.is_empty() {
                        entry
                    } else {
                        format!("{entry}.{field}")
                    };
                    key_error(key, reason)
                })?;
                replies.push(rule);
            }
            config.accounts.push(AccountConfig {
                app_id: account.app_id,
                app_secret,
                token,
                encoding_aes_key,
                previous_token,
                previous_encoding_aes_key,
                encrypt_mode,
                original_id: account.original_id,
                api_base: account.api_base,
                mp_base: account.mp_base,
                permanent_budget: account.permanent_budget,
                forward_url,
                forward_scans: account.forward_scans,
                forward_failure,
                forward_timeout_ms: account.forward_timeout_ms,
                replies,
            });
        }
        for (i, item) in clients.into_iter().enumerate() {
            let at = |field: &str| format!("clients[{i}].{field}");
            let client: ClientFile = item.try_into().map_err(|e: toml::de::Error| {
                key_error(format!("clients[{i}]"), e.message().to_owned())
            })?;
            if client.name.trim().is_empty() {
                return Err(key_error(at("name"), "must not be empty".into()));
            }
            if let Some(digest) = &client.token_sha256
                && (digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(key_error(
                    at("token_sha256"),
                    "must be the SHA-256 of the token in hex (64 characters); `printf %s TOKEN | sha256sum` gives it".into(),
                ));
            }
            if client.token_sha256.is_none() && client.subject.is_none() {
                return Err(key_error(
                    format!("clients[{i}]"),
                    "needs token_sha256 (a bearer token) or subject (a client certificate's CN), or both".into(),
                ));
            }
            if client
                .subject
                .as_deref()
                .is_some_and(|subject| subject.trim().is_empty())
            {
                return Err(key_error(at("subject"), "must not be empty".into()));
            }
            for method in client.methods.iter().flatten() {
                if !METHODS.contains(&method.as_str()) {
                    return Err(key_error(
                        at("methods"),
                        format!("{method:?} is not one of {}", METHODS.join(", ")),
                    ));
                }
            }
            for app_id in client.accounts.iter().flatten() {
                if !config.accounts.is_empty()
                    && !config.accounts.iter().any(|a| a.app_id == *app_id)
                {
                    return Err(key_error(
                        at("accounts"),
                        format!("{app_id} is not a configured account"),
                    ));
                }
            }
            config.clients.push(ClientConfig {
                name: client.name,
                token_sha256: client.token_sha256.map(|d| d.to_ascii_lowercase()),
                subject: client.subject,
                methods: client.methods,
                accounts: client.accounts,
                permanent: client.permanent.unwrap_or(false),
            });
        }
        Ok(config)
    }

    /// Puts the file's accounts and callers (`[[clients]]`) into `serve`. `given(id)` says
    /// whether a flag or environment variable set that setting, which must not clash with
    /// accounts from the file.
    pub fn apply_accounts(
        &self,
        serve: &mut super::ServeConfig,
        given: impl Fn(&str) -> bool,
    ) -> Result<(), FileError> {
        let key_error = |key: &str, reason: &str| FileError::Key {
            path: self.path.clone(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        serve.clients = self.clients.clone();
        if self.accounts.is_empty() {
            return Ok(());
        }
        if let Some(id) = ACCOUNT_KEYS.iter().find(|id| given(id)) {
            return Err(key_error(
                "accounts",
                &format!(
                    "the accounts are configured in the file, and one also by --{} or its environment variable; configure accounts in one place",
                    id.replace('_', "-")
                ),
            ));
        }
        serve.accounts = self.accounts.clone();
        Ok(())
    }

    /// The command line with the file's top-level settings added for every flag that
    /// neither the command line nor the environment set: flags and environment variables
    /// override the file. `matches` are the original arguments' parse; `long_of` maps a
    /// flag id to its long name and whether it takes a value (a switch such as
    /// `--simulator` does not: `true` in the file sets it, `false` leaves it off).
    pub fn merged_args(
        &mut self,
        args: &[OsString],
        matches: &clap::ArgMatches,
        long_of: impl Fn(&str) -> Option<(String, bool)>,
    ) -> Vec<OsString> {
        let mut merged: Vec<OsString> = args.iter().take(1).cloned().collect();
        for (id, value) in &self.server {
            let given = matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            if given {
                continue;
            }
            match long_of(id) {
                Some((long, true)) => merged.push(format!("--{long}={value}").into()),
                Some((long, false)) => match value.as_str() {
                    "true" => merged.push(format!("--{long}").into()),
                    // Off is the switch's default; anything else is refused as clap
                    // would refuse `--switch=value`.
                    "false" => {}
                    _ => merged.push(format!("--{long}={value}").into()),
                },
                None => continue,
            }
            self.applied.insert(id.clone());
        }
        merged.extend(args.iter().skip(1).cloned());
        merged
    }
}

/// A secret from exactly one of its three sources.
fn resolve_secret(source: &SecretSource) -> Result<Option<Secret>, String> {
    let given = [
        source.value.is_some(),
        source.file.is_some(),
        source.env.is_some(),
    ]
    .iter()
    .filter(|&&g| g)
    .count();
    if given > 1 {
        return Err("give the value, `_file` or `_env`, not several".into());
    }
    if let Some(value) = &source.value {
        return Ok(Some(Secret::new(value.as_str())));
    }
    if let Some(file) = &source.file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        // Secret files (Kubernetes, Docker) usually end with a newline that is not part
        // of the value.
        return Ok(Some(Secret::new(text.trim_end_matches(['\n', '\r']))));
    }
    if let Some(name) = &source.env {
        let value = std::env::var(name)
            .map_err(|_| format!("the environment variable {name} is not set"))?;
        return Ok(Some(Secret::new(value)));
    }
    Ok(None)
}
