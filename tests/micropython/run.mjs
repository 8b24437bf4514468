// Runs the client's checks (runner.py) on the npm MicroPython build the page uses, under Node.
//   node tests/micropython/run.mjs <path to micropython.mjs>
// Copies the client library and the checks into MicroPython's in-memory file system, runs
// them, and exits 1 when a check fails (0 when all pass).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const SOURCES = ["layercode_client", "tests/__init__.py", "tests/client", "tests/micropython"];

const { loadMicroPython } = await import(pathToFileURL(resolve(process.argv[2])).href);
const mp = await loadMicroPython({
  heapsize: 16 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function copy(path) {
  const full = join(root, path);
  if (statSync(full).isDirectory()) {
    mp.FS.mkdirTree("/" + path);
    for (const name of readdirSync(full)) copy(join(path, name));
  } else if (path.endsWith(".py")) {
    mp.FS.mkdirTree("/" + dirname(path));
    mp.FS.writeFile("/" + path, readFileSync(full));
  }
}
SOURCES.forEach(copy);

try {
  await mp.runPythonAsync(
    // In a task of its own: asyncio.wait_for cannot cancel-wake the top-level coroutine.
    "import asyncio, os\nos.chdir('/')\nfrom tests.micropython import runner\n" +
      "failures = await asyncio.create_task(runner.main())",
  );
  process.exit(mp.globals.get("failures") ? 1 : 0); // not waiting for a leftover timer
} catch (error) {
  console.error(error.message ?? error);
  process.exit(2);
}
