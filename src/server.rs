//! The listener: accepts clients, enforces the connection limit, and runs
//! the shutdown sequence (stop accepting, drain, force).

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::cancel::CancelRegistry;
use crate::config::{Config, TlsMode};
use crate::policy::CatalogStore;
use crate::rules::Rules;
use crate::tls::ServerTls;
use crate::upstream::Upstream;

/// Where the server is in its life; sessions watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Stop accepting; sessions close at their next idle point.
    Draining,
    /// The grace period is over: sessions close now.
    Force,
}

/// The rules in force, swapped whole on reload.
#[derive(Debug)]
pub struct RulesCell {
    rules: RwLock<Arc<Rules>>,
    /// Bumped after every rules swap, so sessions notice without locking.
    generation: std::sync::atomic::AtomicU64,
}

impl RulesCell {
    pub fn new(rules: Rules) -> RulesCell {
        RulesCell {
            rules: RwLock::new(Arc::new(rules)),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn get(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps in new rules; sessions pick them up at their next statement.
    pub fn set(&self, rules: Rules) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// State every session shares.
pub struct Shared {
    pub config: Config,
    pub rules: Arc<RulesCell>,
    pub tls: Option<ServerTls>,
    pub upstream: Upstream,
    /// Connections as a role's own upstream user, by user name.
    pub upstream_users: std::collections::HashMap<String, Upstream>,
    pub catalogs: CatalogStore,
    /// The audit log, unless `audit.enabled = false`.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// Token validation, when `[[oidc.issuer]]` names any.
    pub oidc: Option<Arc<crate::auth::oidc::Oidc>>,
    /// Only the end-to-end benchmark turns this off, to measure the relay
    /// alone; no configuration key reaches it.
    enforce_policy: std::sync::atomic::AtomicBool,
    /// Session threads; without them sessions run on the caller's runtime.
    workers: std::sync::OnceLock<crate::workers::Workers>,
    pub cancels: Arc<CancelRegistry>,
    /// Every live session (the console lists, cancels and ends them).
    pub sessions: Arc<crate::session::registry::Sessions>,
    /// Statements held for approval.
    pub approvals: Arc<crate::approval::Queue>,
    /// Plans masked roles' rows (`[role.NAME.mask]`).
    pub masker: Arc<crate::mask::relay::Masker>,
    /// Told of every new approval request (`approval.webhook_url`).
    pub webhook: Option<Arc<crate::webhook::Webhook>>,
    /// Classifications of long texts running apart from the session
    /// threads (see `session::guard::CLASSIFY_APART`): one per core.
    pub classify_slots: Arc<tokio::sync::Semaphore>,
    /// Salts the mock SCRAM verifiers of unknown users.
    pub instance_secret: [u8; 32],
    pub phase: watch::Receiver<Phase>,
    phase_tx: watch::Sender<Phase>,
}

impl Shared {
    /// Builds everything a server needs from a validated config and rules.
    pub fn new(config: Config, rules: Rules) -> Result<Arc<Shared>, String> {
        let tls = match config.tls.mode {
            TlsMode::Off => None,
            _ => {
                let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
                    return Err("tls.mode needs tls.cert and tls.key".into());
                };
                Some(crate::tls::server_from_files(cert, key)?)
            }
        };
        let upstream = Upstream::from_config(&config)?;
        let upstream_users = config
            .upstream_user_passwords()?
            .into_iter()
            .map(|(name, password)| {
                let u = upstream.as_user(&name, password);
                (name, u)
            })
            .collect();
        let catalogs = CatalogStore::new(Duration::from_secs(config.upstream.catalog_refresh_secs));
        let audit = if config.audit.enabled {
            Some(Arc::new(crate::audit::AuditLog::start(&config.audit)?))
        } else {
            None
        };
        let oidc = crate::auth::oidc::Oidc::new(&config.oidc)?.map(Arc::new);
        warn_unused_bindings(&config, &rules);
        let mut instance_secret = [0u8; 32];
        rand::rng().fill_bytes(&mut instance_secret);
        let webhook = match &config.approval.webhook_url {
            Some(url) => Some(Arc::new(crate::webhook::Webhook::new(url)?)),
            None => None,
        };
        let masker = Arc::new(crate::mask::relay::Masker::new(config.mask.hash_key()?));
        let (phase_tx, phase) = watch::channel(Phase::Running);
        Ok(Arc::new(Shared {
            config,
            rules: Arc::new(RulesCell::new(rules)),
            tls,
            upstream,
            upstream_users,
            catalogs,
            audit,
            oidc,
            enforce_policy: std::sync::atomic::AtomicBool::new(true),
            workers: std::sync::OnceLock::new(),
            cancels: Arc::new(CancelRegistry::default()),
            sessions: Arc::default(),
            approvals: Arc::default(),
            webhook,
            masker,
            classify_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            instance_secret,
            phase,
            phase_tx,
        }))
    }

    /// The upstream to connect to for a role: its own user when it names
    /// one (with the password configured in `upstream.users`, if any).
    pub fn upstream_for(&self, role: &crate::policy::Role) -> Upstream {
        match &role.upstream_user {
            Some(user) => self
                .upstream_users
                .get(user)
                .cloned()
                .unwrap_or_else(|| self.upstream.as_user(user, None)),
            None => self.upstream.clone(),
        }
    }

    /// Starts the session threads (`server.worker_threads`, default one per
    /// core) that `run` deals connections to.
    pub fn start_workers(&self) -> std::io::Result<()> {
        let n = match self.config.server.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let workers = crate::workers::Workers::start(n)?;
        let _ = self.workers.set(workers);
        Ok(())
    }

    /// Relays without judging anything. For the benchmark's baseline only.
    #[doc(hidden)]
    pub fn disable_policy_for_benchmarks(&self) {
        self.enforce_policy
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn enforces_policy(&self) -> bool {
        self.enforce_policy
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn rules(&self) -> Arc<Rules> {
        self.rules.get()
    }

    /// Whether statements that need approval are held (some role may
    /// approve them) rather than refused.
    pub fn approvals_enabled(&self) -> bool {
        self.rules().has_approvers()
    }

    /// Swaps in new rules; sessions pick them up at their next statement.
    pub fn set_rules(&self, rules: Rules) {
        self.rules.set(rules)
    }

    pub fn rules_generation(&self) -> u64 {
        self.rules.generation()
    }

    /// What a session's guard needs of the server, and no more.
    pub fn guard_context(&self) -> crate::session::guard::GuardContext {
        crate::session::guard::GuardContext {
            rules: self.rules.clone(),
            max_sql_bytes: self.config.server.max_sql_bytes,
            classify_slots: self.classify_slots.clone(),
            fingerprints: self.audit.is_some(),
            refresh: Some((self.upstream.clone(), self.catalogs.min_gap)),
            // Only where some role masks: every other session's rows are
            // never looked at.
            planner: self
                .rules
                .get()
                .has_masks()
                .then(|| self.masker.clone() as Arc<dyn crate::session::rows::RowPlanner>),
        }
    }
}

/// Accepts clients until `shutdown` resolves, then drains: sessions get
/// `server.shutdown_grace_secs` to reach an idle point, then are closed.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let limit = Arc::new(Semaphore::new(shared.config.server.max_connections));
    if let Some(oidc) = &shared.oidc {
        oidc.warm_up();
    }
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = limit.clone().try_acquire_owned().ok();
                let session_shared = shared.clone();
                match shared.workers.get() {
                    Some(workers) => {
                        // The socket moves to the session thread's own reactor.
                        let Ok(std_tcp) = tcp.into_std() else { continue };
                        sessions.spawn_on(
                            async move {
                                if let Ok(tcp) = tokio::net::TcpStream::from_std(std_tcp) {
                                    let admitted = permit.is_some();
                                    crate::session::serve(tcp, peer, session_shared, admitted).await;
                                }
                                drop(permit);
                            },
                            workers.next(),
                        );
                    }
                    None => {
                        sessions.spawn(async move {
                            let admitted = permit.is_some();
                            crate::session::serve(tcp, peer, session_shared, admitted).await;
                            drop(permit);
                        });
                    }
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let grace = shared.config.server.shutdown_grace();
    tracing::info!(
        sessions = sessions.len(),
        "shutting down: no longer accepting, {} s grace",
        grace.as_secs()
    );
    let _ = shared.phase_tx.send(Phase::Draining);
    if !all_ended(&mut sessions, grace).await {
        tracing::info!(
            sessions = sessions.len(),
            "grace period over: closing remaining sessions"
        );
        let _ = shared.phase_tx.send(Phase::Force);
        if !all_ended(&mut sessions, Duration::from_secs(5)).await {
            sessions.abort_all();
            // Aborted sessions record their end as they are dropped: let
            // that happen before the audit log closes.
            all_ended(&mut sessions, Duration::from_secs(1)).await;
        }
    }
    if let Some(audit) = &shared.audit {
        // Everything recorded goes into Parquet before pgward exits.
        audit.close();
    }
    tracing::info!("shutdown complete");
}

/// Waits up to `limit` for every session to finish; says whether they did.
async fn all_ended(sessions: &mut JoinSet<()>, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        while sessions.join_next().await.is_some() {}
    })
    .await
    .is_ok()
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); only Ctrl-C stops pgward");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Reloads the rules directory on SIGHUP. A bad reload keeps the old rules
/// and logs why; sessions are never dropped.
pub fn spawn_reload_on_sighup(shared: Arc<Shared>, dir: std::path::PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot watch SIGHUP; rules reload is unavailable");
            return;
        };
        while hup.recv().await.is_some() {
            match Rules::load(&dir) {
                Ok(rules) => {
                    tracing::info!(
                        identities = rules.identities.len(),
                        "rules reloaded from {}",
                        dir.display()
                    );
                    shared.set_rules(rules);
                    // New rules may map a role to another upstream user.
                    tokio::spawn(crate::privileges::warn_at_start(
                        shared.upstream.clone(),
                        shared.rules(),
                    ));
                }
                Err(e) => tracing::error!("rules reload failed, keeping the old rules: {e}"),
            }
        }
    });
}

/// Bindings that can never match are almost always a typo in an issuer.
fn warn_unused_bindings(config: &Config, rules: &Rules) {
    for b in &rules.bindings {
        match &b.issuer {
            _ if config.oidc.issuer.is_empty() => {
                tracing::warn!(
                    "{}: binding unused: no [[oidc.issuer]] is configured",
                    b.source
                )
            }
            Some(i) if !config.oidc.issuer.iter().any(|c| &c.issuer == i) => tracing::warn!(
                "{}: binding names issuer {i:?}, which is not configured in [[oidc.issuer]]",
                b.source
            ),
            _ => {}
        }
    }
}
