//! `cistern warm`: starts (or resumes, or follows) a warm-up job on a running Cistern through
//! its admin API and shows its progress — a bar on a terminal, a line every few seconds
//! otherwise — then a report; the exit status is 1 if anything failed.

use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde_json::Value;

/// `cistern warm` arguments.
#[derive(clap::Args)]
pub struct WarmArgs {
    /// What to warm: s3://BUCKET/PREFIX, az://CONTAINER/PREFIX, or a Blob URL
    /// http(s)://HOST/ACCOUNT/CONTAINER/PREFIX (host-style https://ACCOUNT.blob.DOMAIN/CONTAINER/PREFIX).
    #[arg(value_name = "URL", required_unless_present_any = ["resume", "attach"])]
    url: Option<String>,
    /// The admin listener of the Cistern to ask (a front, in a cluster).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    admin: String,
    /// Keep the warmed chunks from eviction this long (e.g. 30m, 2h).
    #[arg(long, value_name = "DURATION")]
    pin: Option<String>,
    /// Objects warmed at once (1–256). Default: 8.
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Resume an interrupted or cancelled job: objects it finished are skipped.
    #[arg(long, value_name = "JOB", conflicts_with_all = ["url", "attach"])]
    resume: Option<String>,
    /// Follow a job already started.
    #[arg(long, value_name = "JOB", conflicts_with = "url")]
    attach: Option<String>,
    /// Start the job, print its id and return.
    #[arg(long)]
    detach: bool,
}

/// Which bucket (container) and prefix a warm-up URL names.
pub fn parse_target(url: &str) -> anyhow::Result<(String, String)> {
    let usage = "expected s3://BUCKET/PREFIX, az://CONTAINER/PREFIX or http(s)://HOST/ACCOUNT/CONTAINER/PREFIX";
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| anyhow::anyhow!("{url:?}: not UTF-8 once decoded"))
    };
    let (bucket, prefix) = if let Some(rest) = url
        .strip_prefix("s3://")
        .or_else(|| url.strip_prefix("az://"))
    {
        // Taken literally, as the AWS CLI and fsspec take them.
        let (b, p) = rest.split_once('/').unwrap_or((rest, ""));
        (b.to_string(), p.to_string())
    } else if let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.split(['?', '#']).next().unwrap_or("");
        let host_style = host.split(':').next().unwrap_or("").contains(".blob.");
        let path = if host_style {
            path
        } else {
            // Path-style: the account comes first.
            match path.split_once('/') {
                Some((_account, rest)) => rest,
                None => bail!("{url:?}: no container after the account; {usage}"),
            }
        };
        let (c, p) = path.split_once('/').unwrap_or((path, ""));
        (decode(c)?, decode(p)?)
    } else {
        bail!("{url:?}: {usage}");
    };
    if bucket.is_empty() {
        bail!("{url:?}: no bucket or container; {usage}");
    }
    Ok((bucket, prefix))
}

struct Client {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &self.auth);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or(text.trim());
            bail!("{status}: {msg}");
        }
        Ok(v)
    }
}

/// Runs `cistern warm`; the process's exit status.
pub fn run(a: WarmArgs) -> anyhow::Result<i32> {
    let env = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok());
    let (Some(ak), Some(secret)) = (
        env(&["CISTERN_ACCESS_KEY", "AWS_ACCESS_KEY_ID"]),
        env(&["CISTERN_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"]),
    ) else {
        bail!("set CISTERN_ACCESS_KEY and CISTERN_SECRET_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) to a principal with the admin permission");
    };
    let target = a.url.as_deref().map(parse_target).transpose()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let client = Client {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .context("cannot create the HTTP client")?,
            base: if a.admin.contains("://") {
                a.admin.trim_end_matches('/').to_string()
            } else {
                format!("http://{}", a.admin)
            },
            auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{ak}:{secret}"))
            ),
        };
        let job = match (&target, &a.resume, &a.attach) {
            (Some((bucket, prefix)), _, _) => {
                let mut body = serde_json::json!({ "bucket": bucket, "prefix": prefix });
                if let Some(p) = &a.pin {
                    body["pin"] = Value::from(p.as_str());
                }
                if let Some(c) = a.concurrency {
                    body["concurrency"] = Value::from(c);
                }
                client
                    .call(reqwest::Method::POST, "/admin/warm", Some(body))
                    .await?
            }
            (None, Some(id), _) => {
                client
                    .call(
                        reqwest::Method::POST,
                        &format!("/admin/warm/{id}/resume"),
                        None,
                    )
                    .await?
            }
            (None, None, Some(id)) => {
                client
                    .call(reqwest::Method::GET, &format!("/admin/warm/{id}"), None)
                    .await?
            }
            (None, None, None) => bail!("nothing to warm"),
        };
        let id = job["id"].as_str().unwrap_or_default().to_string();
        if a.detach {
            println!("{id}");
            return Ok(0);
        }
        follow(&client, &id).await
    })
}

async fn follow(client: &Client, id: &str) -> anyhow::Result<i32> {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(2)
    };
    let mut last_line = Instant::now();
    let mut last_done = u64::MAX;
    eprintln!("warm-up job {id}");
    let job = loop {
        let job = client
            .call(reqwest::Method::GET, &format!("/admin/warm/{id}"), None)
            .await?;
        let running = job["state"] == "running";
        let done =
            job["objects_done"].as_u64().unwrap_or(0) + job["objects_failed"].as_u64().unwrap_or(0);
        if tty {
            eprint!("\r\x1b[K{}", progress_line(&job, true));
            let _ = std::io::stderr().flush();
        } else if !running || (done != last_done && last_line.elapsed() >= Duration::from_secs(2)) {
            eprintln!("{}", progress_line(&job, false));
            last_line = Instant::now();
            last_done = done;
        }
        if !running {
            if tty {
                eprintln!();
            }
            break job;
        }
        tokio::time::sleep(every).await;
    };
    Ok(report(&job))
}

fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn progress_line(j: &Value, bar: bool) -> String {
    let (done, failed, total) = (
        num(j, "objects_done"),
        num(j, "objects_failed"),
        num(j, "objects_total"),
    );
    let (bdone, btotal) = (num(j, "bytes_done"), num(j, "bytes_total"));
    let listing = if j["listing_complete"] == true {
        ""
    } else {
        "+"
    };
    let rate = j["rate_bytes_per_second"].as_f64().unwrap_or(0.0);
    let eta = j["eta_seconds"]
        .as_f64()
        .map_or("?".to_string(), |s| format!("{}s", s.round() as u64));
    let mut s = String::new();
    if bar {
        let frac = if btotal > 0 {
            (bdone + num(j, "bytes_failed")) as f64 / btotal as f64
        } else if total > 0 {
            (done + failed) as f64 / total as f64
        } else {
            0.0
        };
        let filled = ((frac.clamp(0.0, 1.0)) * 30.0).round() as usize;
        s.push_str(&format!(
            "[{}{}] ",
            "#".repeat(filled),
            ".".repeat(30 - filled)
        ));
    }
    s.push_str(&format!(
        "{done}/{total}{listing} objects, {}/{}{listing}, {}/s, ETA {eta}",
        human(bdone),
        human(btotal),
        human(rate as u64)
    ));
    if failed > 0 {
        s.push_str(&format!(", {failed} failed"));
    }
    s
}

fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Prints the final report; the exit status (1 when anything failed or the job did not end).
fn report(j: &Value) -> i32 {
    let state = j["state"].as_str().unwrap_or("?");
    println!(
        "warm-up {} {state}: {} of {} objects ({} skipped as done before), {} in {:.1}s; {} from the origin, {} already cached, {} chunks pinned",
        j["id"].as_str().unwrap_or("?"),
        num(j, "objects_done"),
        num(j, "objects_total"),
        num(j, "objects_skipped"),
        human(num(j, "bytes_done")),
        j["elapsed_seconds"].as_f64().unwrap_or(0.0),
        human(num(j, "bytes_fetched")),
        human(num(j, "bytes_cached")),
        num(j, "chunks_pinned"),
    );
    if let Some(e) = j["error"].as_str() {
        println!("error: {e}");
    }
    let failed = num(j, "objects_failed");
    if failed > 0 {
        println!("{failed} objects failed:");
        for f in j["failures"].as_array().into_iter().flatten() {
            println!(
                "  {}: {}",
                f["key"].as_str().unwrap_or("?"),
                f["reason"].as_str().unwrap_or("?")
            );
        }
        let listed = j["failures"].as_array().map_or(0, Vec::len) as u64;
        if failed > listed {
            println!("  … and {} more", failed - listed);
        }
    }
    if state == "done" && failed == 0 {
        0
    } else {
        if state != "done" {
            println!(
                "resume with: cistern warm --resume {}",
                j["id"].as_str().unwrap_or("?")
            );
        }
        1
    }
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn warm_urls_name_a_bucket_and_prefix() {
        let t = |u: &str| parse_target(u).expect(u);
        assert_eq!(t("s3://data/train/"), ("data".into(), "train/".into()));
        assert_eq!(t("s3://data"), ("data".into(), "".into()));
        assert_eq!(t("az://ckpt/run 1/"), ("ckpt".into(), "run 1/".into()));
        assert_eq!(
            t("http://127.0.0.1:10000/devstoreaccount1/ckpt/a%20b/"),
            ("ckpt".into(), "a b/".into())
        );
        assert_eq!(
            t("https://acct.blob.core.windows.net/ckpt/x?sv=1"),
            ("ckpt".into(), "x".into())
        );
        for bad in ["data/train", "s3://", "ftp://x/y", "http://host/acct"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
