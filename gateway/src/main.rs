//! The `cistern` binary: `cistern serve`, and `cistern warm` (a client of a running
//! instance's admin API).

mod warm_cli;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context as _;
use cistern_gateway::config::{
    self, Overrides, DEV_ACCESS_KEY, DEV_ACCOUNT, DEV_ACCOUNT_KEY, DEV_SECRET,
};
use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's allocator: under SSD-hit load at concurrency 256, glibc kept
/// freed chunk and piece buffers in its arenas (peak RSS 550–590 MiB with a 128 MiB RAM cache).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cistern",
    version,
    about = "S3- and Azure-Blob-compatible caching gateway for object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // reason: parsed once at start-up; size does not matter
enum Command {
    /// Serve S3 and Azure Blob through the cache. With no arguments: ./data as buckets, on
    /// loopback, with development credentials.
    Serve(ServeArgs),
    /// Fill the cache with a bucket prefix before a job, through a running Cistern's admin
    /// API (cluster-wide from a front), showing progress; exit status 1 if anything failed.
    Warm(warm_cli::WarmArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory served as buckets (one per subdirectory). Default: ./data.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// SSD cache directory. Default: ./.cistern.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// S3 listener. Default: 127.0.0.1:9000.
    #[arg(long, value_name = "ADDR")]
    s3_listen: Option<String>,
    /// Azure Blob listener. Default: 127.0.0.1:10000.
    #[arg(long, value_name = "ADDR")]
    blob_listen: Option<String>,
    /// One listener for both dialects, chosen per request (x-ms-* headers, Shared Key, bearer
    /// or SAS → Blob; else S3). Default: none.
    #[arg(long, value_name = "ADDR")]
    dual_listen: Option<String>,
    /// Admin listener (/metrics, /healthz, /readyz). Default: 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// RAM cache size, e.g. 512MiB. Default: 1GiB.
    #[arg(long, value_name = "SIZE")]
    memory_cache: Option<String>,
    /// SSD cache size, e.g. 4GiB (0 for none). Default: 4GiB.
    #[arg(long, value_name = "SIZE")]
    disk_cache: Option<String>,
    /// Chunk size, e.g. 4MiB. Default: 4MiB.
    #[arg(long, value_name = "SIZE")]
    chunk_size: Option<String>,
    /// What this process does: all (front and cache node), front, or cache. Default: all.
    #[arg(long, value_name = "ROLE")]
    role: Option<String>,
    /// A cache node's internal listener for the peer protocol.
    #[arg(long, value_name = "ADDR")]
    peer_listen: Option<String>,
    /// The cache nodes' peer addresses (the same list on every node).
    #[arg(long, value_name = "ADDR,ADDR,...")]
    peers: Option<String>,
    /// Cache nodes from DNS, re-resolved (a Kubernetes headless Service).
    #[arg(long, value_name = "NAME:PORT")]
    peers_dns: Option<String>,
    /// Cache nodes from etcd: its client URLs (cache nodes register, everyone watches).
    #[arg(long, value_name = "URL,URL,...")]
    peers_etcd: Option<String>,
    /// Cache nodes from a Kubernetes Service's EndpointSlices (PORT: name or number).
    #[arg(long, value_name = "[NAMESPACE/]SERVICE:PORT")]
    peers_k8s: Option<String>,
    /// The peer address other processes reach this node at. Default: --peer-listen.
    #[arg(long, value_name = "IP:PORT")]
    advertise: Option<String>,
    /// This process's zone (hot replicas go to distinct zones; fronts read their own zone's).
    #[arg(long, value_name = "ZONE")]
    zone: Option<String>,
    /// File holding the cluster secret that authenticates peer traffic.
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Log lines (one access-log line per request) are formatted on the request path but
    // written by a background thread, so a slow or busy stderr never stalls a response; the
    // guard flushes what is queued when `main` returns. The thread writes whatever lines are
    // queued as one write and flushes when the queue is empty (unbuffered, it made one
    // syscall per line: about 1.9 µs of server CPU per 4 KiB hit, and most of its p99 gap).
    let (writer, _flush_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        .event_format(cistern_gateway::logfmt::Lines::default())
        .init();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Warm(args) => match warm_cli::run(args) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("cistern warm: {e:#}");
                std::process::exit(2)
            }
        },
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let file = a.config.as_deref().map(config::load_file).transpose()?;
    let overrides = Overrides {
        data: a.data,
        cache_dir: a.cache_dir,
        s3_listen: a.s3_listen,
        blob_listen: a.blob_listen,
        dual_listen: a.dual_listen,
        admin_listen: a.admin_listen,
        memory_cache: a.memory_cache,
        disk_cache: a.disk_cache,
        chunk_size: a.chunk_size,
        role: a.role,
        peer_listen: a.peer_listen,
        peers: a.peers,
        peers_dns: a.peers_dns,
        peers_etcd: a.peers_etcd,
        peers_k8s: a.peers_k8s,
        advertise: a.advertise,
        zone: a.zone,
        cluster_secret_file: a.cluster_secret_file,
    };
    let settings = config::resolve(file, &overrides)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        if let Some(dir) = &settings.created_data_dir {
            println!(
                "cistern: created {} (each subdirectory is a bucket)",
                dir.display()
            );
        }
        let running = cistern_gateway::app::start(&settings).await?;
        println!("cistern {} serving", env!("CARGO_PKG_VERSION"));
        if let Some(s3) = running.s3_addr {
            println!("  S3:      http://{s3}");
        }
        if let Some(blob) = running.blob_addr {
            println!("  Blob:    http://{blob}/<account>");
        }
        if let Some(c) = &settings.cluster {
            let role = match settings.role {
                config::Role::All => "front and cache node",
                config::Role::Front => "front",
                config::Role::Cache => "cache node",
            };
            let members = match &c.members {
                config::Members::Static(list) => list.join(","),
                config::Members::Dns { name, port } => format!("DNS {name}:{port}"),
                config::Members::Etcd {
                    endpoints, prefix, ..
                } => format!("etcd {} {prefix}", endpoints.join(",")),
                config::Members::Kubernetes {
                    namespace, service, port, ..
                } => format!(
                    "EndpointSlices of {}{service}:{port}",
                    namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default()
                ),
            };
            match running.peer_addr {
                Some(p) => println!("  cluster: {role}, peers on {p}, members {members}"),
                None => println!("  cluster: {role}, members {members}"),
            }
        }
        if let Some(d) = running.dual_addr {
            println!("  both:    http://{d} (dialect chosen per request)");
        }
        println!(
            "  admin:   http://{}/metrics  /healthz  /readyz  /dashboard  /admin/warm",
            running.admin_addr
        );
        if settings.role == config::Role::Front {
            println!(
                "  cache:   on the cache nodes (chunks {} KiB)",
                settings.chunk_size >> 10
            );
        } else {
            println!(
            "  cache:   {} (RAM {} MiB, SSD {} MiB, chunks {} KiB)",
            settings.cache_dir.display(),
            settings.memory_bytes >> 20,
            settings.disk_bytes >> 20,
            settings.chunk_size >> 10
        );
        }
        for o in &settings.origins {
            let what = match &o.spec {
                config::OriginSpec::Fs { root } => format!("directory {}", root.display()),
                config::OriginSpec::S3(c) => format!("S3 at {}", c.endpoint),
                config::OriginSpec::Azure(c) => {
                    format!("Azure Blob account {} at {}", c.account, c.endpoint)
                }
            };
            println!(
                "  origin:  {} = {what}{}",
                o.name,
                if o.expose_buckets {
                    " (all buckets exposed)"
                } else {
                    ""
                }
            );
        }
        if let (true, Some(s3), Some(blob)) = (
            settings.dev_credentials,
            running.s3_addr,
            running.blob_addr,
        ) {
            println!("  development credentials (loopback only):");
            println!(
                "    AWS_ACCESS_KEY_ID={DEV_ACCESS_KEY} AWS_SECRET_ACCESS_KEY={DEV_SECRET} \\"
            );
            println!("      aws --endpoint-url http://{s3} s3 ls");
            println!(
                "    DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};BlobEndpoint=http://{}/{DEV_ACCOUNT};",
                blob
            );
        }
        wait_for_signal().await;
        println!("cistern: shutting down, draining in-flight requests");
        running.shutdown().await;
        println!("cistern: stopped");
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
