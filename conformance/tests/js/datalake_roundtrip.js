// The JavaScript Data Lake SDK (@azure/storage-file-datalake) against Cistern's DFS front:
// directory, create + appends + flush, ranged read, recursive listing, move (rename), delete.
// Usage: node datalake_roundtrip.js URL ACCOUNT KEY FILESYSTEM TOP; prints one JSON line.
//
// The URL is host-style (`http://<account>.dfs.cistern.test:PORT`): the SDK's move() rebuilds
// the destination URL's whole path, which drops a path-style account. Names under
// `.cistern.test` resolve to loopback here (a test shim; a deployment uses real DNS).
"use strict";
const dns = require("dns");
const realLookup = dns.lookup;
dns.lookup = function lookup(host, options, callback) {
  if (typeof options === "function") {
    callback = options;
    options = {};
  }
  if (typeof host === "string" && host.endsWith(".cistern.test")) {
    const opts = typeof options === "number" ? { family: options } : options || {};
    return opts.all
      ? process.nextTick(callback, null, [{ address: "127.0.0.1", family: 4 }])
      : process.nextTick(callback, null, "127.0.0.1", 4);
  }
  return realLookup.call(dns, host, options, callback);
};
const { DataLakeServiceClient, StorageSharedKeyCredential } = require("@azure/storage-file-datalake");

async function main() {
  const [url, account, key, fsName, top] = process.argv.slice(2);
  const svc = new DataLakeServiceClient(url, new StorageSharedKeyCredential(account, key),
    { retryOptions: { maxTries: 1 } });
  const fs = svc.getFileSystemClient(fsName);
  await fs.getDirectoryClient(`${top}/dir`).create();
  const f = fs.getFileClient(`${top}/dir/data.txt`);
  await f.create();
  const data = Buffer.from("hello from the JavaScript Data Lake SDK\n".repeat(1000));
  await f.append(data.subarray(0, 10000), 0, 10000);
  await f.append(data.subarray(10000), 10000, data.length - 10000);
  await f.flush(data.length, { close: true });
  const part = await f.readToBuffer(6, 29);
  const names = [];
  for await (const p of fs.listPaths({ path: top, recursive: true })) {
    names.push([p.name, Boolean(p.isDirectory)]);
  }
  await f.move(`${top}/moved.txt`);
  const moved = fs.getFileClient(`${top}/moved.txt`);
  const props = await moved.getProperties();
  const whole = await moved.readToBuffer();
  let oldGone = false;
  try {
    await f.getProperties();
  } catch (e) {
    oldGone = e.statusCode === 404;
  }
  await fs.getDirectoryClient(top).delete(true);
  const left = [];
  for await (const p of fs.listPaths({ recursive: true })) {
    if (p.name.startsWith(top)) left.push(p.name);
  }
  console.log(JSON.stringify({
    part: part.toString(), names, size: props.contentLength,
    same: whole.equals(data), oldGone, left,
  }));
}

main().catch((e) => {
  console.error(`${e.statusCode} ${e.code}: ${e.message}`);
  process.exit(1);
});
