#[tokio::test]
async fn abandoned_uploads_are_swept_and_live_ones_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let uploads = dir.path().join(super::UPLOADS_DIR);
    let old_mp = uploads.join("mp-00000000000000000000000000000001");
    let fresh_mp = uploads.join("mp-00000000000000000000000000000002");
    std::fs::create_dir_all(&old_mp).expect("mkdir");
    std::fs::create_dir_all(&fresh_mp).expect("mkdir");
    std::fs::write(old_mp.join("00001"), b"part").expect("write");
    std::fs::write(uploads.join("up-stale"), b"tmp").expect("write");
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 24 * 3600);
    for p in [&old_mp, &uploads.join("up-stale")] {
        std::fs::File::open(p)
            .expect("open")
            .set_modified(past)
            .expect("set mtime");
    }
    let n = super::sweep(&uploads, super::STAGING_TTL)
        .await
        .expect("sweep");
    assert_eq!(n, 2);
    assert!(!old_mp.exists() && !uploads.join("up-stale").exists());
    assert!(fresh_mp.exists());
    assert_eq!(
        super::sweep(&dir.path().join("none"), super::STAGING_TTL)
            .await
            .expect("missing dir"),
        0
    );
}

use super::*;

fn setup() -> (tempfile::TempDir, FsOrigin) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("b/sub")).expect("mkdir");
    std::fs::write(data.join("b/hello.txt"), b"hello world").expect("write");
    std::fs::write(data.join("b/sub/x"), b"x").expect("write");
    std::fs::write(dir.path().join("secret"), b"outside").expect("write");
    std::os::unix::fs::symlink(dir.path().join("secret"), data.join("b/escape")).expect("symlink");
    let origin = FsOrigin::new(&data).expect("origin");
    (dir, origin)
}

#[tokio::test]
async fn reads_ranges_and_checks_etag() {
    let (_d, o) = setup();
    let r = o.read("b", "hello.txt", 6..100, None).await.expect("read");
    assert_eq!(&r.data[..], b"world");
    assert_eq!(r.meta.size, 11);
    let again = o
        .read("b", "hello.txt", 0..5, Some(&r.meta.etag))
        .await
        .expect("read");
    assert_eq!(&again.data[..], b"hello");
    let e = o
        .read("b", "hello.txt", 0..5, Some("other"))
        .await
        .expect_err("changed");
    assert_eq!(e.kind(), ErrorKind::ObjectChanged);
}

#[tokio::test]
async fn folder_markers_are_directories_with_a_marker_file() {
    use crate::origin::ListCursor;
    use futures::StreamExt as _;
    let (d, o) = setup();
    let empty = || Upload {
        body: futures::stream::empty().boxed(),
        len: 0,
    };
    let opts = PutOptions::default();
    o.put("b", "lake/run/", empty(), &opts)
        .await
        .expect("marker");
    assert!(d.path().join("data/b/lake/run").is_dir());
    assert_eq!(o.head("b", "lake/run/").await.expect("head").size, 0);
    let listed = |page: ListPage| page.entries.into_iter().map(|e| e.key).collect::<Vec<_>>();
    let q = ListQuery {
        prefix: "lake/".into(),
        delimiter: None,
        max_keys: 100,
        cursor: ListCursor::V1 { marker: None },
    };
    assert_eq!(listed(o.list("b", &q).await.expect("list")), ["lake/run/"]);
    // A file inside leaves the marker as it is; an empty directory made otherwise is none.
    let one = Upload {
        body: futures::stream::once(async { Ok(Bytes::from_static(b"x")) }).boxed(),
        len: 1,
    };
    o.put("b", "lake/run/f", one, &opts).await.expect("file");
    std::fs::create_dir_all(d.path().join("data/b/lake/stray")).expect("mkdir");
    assert_eq!(o.head("b", "lake/run/").await.expect("head").size, 0);
    assert!(o.head("b", "lake/stray/").await.is_err());
    assert_eq!(
        listed(o.list("b", &q).await.expect("list")),
        ["lake/run/", "lake/run/f"]
    );
    std::fs::remove_dir(d.path().join("data/b/lake/stray")).expect("rmdir");
    // Bytes in a marker, or a marker that is no directory name, are refused.
    let one = Upload {
        body: futures::stream::once(async { Ok(Bytes::from_static(b"x")) }).boxed(),
        len: 1,
    };
    assert!(o.put("b", "lake/x/", one, &opts).await.is_err());
    assert!(o.put("b", "lake/../", empty(), &opts).await.is_err());
    // The marker keeps its directory when the last file goes, and takes it when deleted.
    o.delete("b", "lake/run/f").await.expect("delete");
    assert!(o.head("b", "lake/run/").await.is_ok());
    o.delete("b", "lake/run/").await.expect("delete marker");
    assert!(!d.path().join("data/b/lake").exists());
}

#[tokio::test]
async fn etag_changes_when_the_file_changes() {
    let (d, o) = setup();
    let a = o.head("b", "hello.txt").await.expect("head").etag;
    std::fs::write(d.path().join("data/b/hello.txt"), b"hello there").expect("write");
    let b = o.head("b", "hello.txt").await.expect("head").etag;
    assert_ne!(a, b);
}

#[tokio::test]
async fn never_escapes_the_root() {
    let (_d, o) = setup();
    for key in [
        "../secret",
        "../../etc/passwd",
        "/etc/passwd",
        "sub/../../secret",
        "a//b",
        "./x",
    ] {
        let e = o.read("b", key, 0..10, None).await.expect_err(key);
        assert!(
            matches!(
                e.kind(),
                ErrorKind::InvalidArgument | ErrorKind::AccessDenied | ErrorKind::NotFound
            ),
            "{key}: {e}"
        );
    }
    std::fs::create_dir_all(_d.path().join("data/other")).expect("mkdir");
    std::fs::write(_d.path().join("data/other/private"), b"other bucket").expect("write");
    std::os::unix::fs::symlink(
        _d.path().join("data/other/private"),
        _d.path().join("data/b/cross"),
    )
    .expect("symlink");
    let e = o
        .read("b", "cross", 0..10, None)
        .await
        .expect_err("symlink into another bucket");
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    let e = o.head("b", "sub/").await.expect_err("folder marker");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = o
        .read("b", "escape", 0..10, None)
        .await
        .expect_err("symlink out");
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    assert!(o.read("..", "secret", 0..10, None).await.is_err());
    let page = o
        .list(
            "b",
            &ListQuery {
                prefix: String::new(),
                delimiter: None,
                max_keys: 100,
                cursor: super::super::ListCursor::V1 { marker: None },
            },
        )
        .await
        .expect("list");
    let keys: Vec<_> = page.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["hello.txt", "sub/x"],
        "the escaping symlink is not listed"
    );
    for prefix in ["/", "//etc/", "../", "../../", "sub/../../", "./"] {
        let q = ListQuery {
            prefix: prefix.into(),
            delimiter: None,
            max_keys: 100,
            cursor: super::super::ListCursor::V1 { marker: None },
        };
        let page = o.list("b", &q).await.expect("list");
        assert!(
            page.entries.is_empty(),
            "prefix {prefix:?} listed {:?}",
            page.entries.first()
        );
    }
}
