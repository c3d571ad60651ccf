// did:key + general JWS through the real npm libraries the 3Speak network uses (dids,
// key-did-provider-ed25519, key-did-resolver). speak-encoder's tests drive it to prove that
// speak_encoder.node.identity is byte-compatible with them.
//
//   node jws.mjs did      stdin {"seeds": [<base64 seed>, …]}            → {"dids": [<did>, …]}
//   node jws.mjs sign     stdin {"seed": <base64>, "payloads": [{…}, …]} → {"did", "jws": [{…}, …]}
//   node jws.mjs verify   stdin {"jws": [{…}, …]}
//                         → {"results": [{"ok": true, "kid", "payload"} | {"ok": false, "error"}]}
//
// An optional last argument names the node_modules folder holding the libraries; by default the
// one scripts/install-test-deps.sh fills (.tools/did-js/node_modules), then one next to this file.
// (ES modules ignore NODE_PATH, hence the explicit resolution.) Seeds arrive on stdin only.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const modulesDir = [process.argv[3], join(here, '..', '..', '.tools', 'did-js', 'node_modules'),
  join(here, 'node_modules')].find((dir) => dir && existsSync(join(dir, 'dids')))
if (!modulesDir) {
  process.stderr.write('error: the npm packages dids, key-did-provider-ed25519 and key-did-resolver ' +
    'are not installed: run scripts/install-test-deps.sh (or `make test-deps`)\n')
  process.exit(3)
}
const requireFrom = createRequire(join(resolve(modulesDir), 'resolve-from-here.js'))
const load = async (name) => import(pathToFileURL(requireFrom.resolve(name)).href)
const { DID } = await load('dids')
const { Ed25519Provider } = await load('key-did-provider-ed25519')
const KeyResolver = (await load('key-did-resolver')).default

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

function seedBytes(b64) {
  const seed = new Uint8Array(Buffer.from(b64, 'base64'))
  if (seed.length !== 32) throw new Error(`a seed must be 32 bytes, got ${seed.length}`)
  return seed
}

async function authenticated(seed) {
  const did = new DID({ provider: new Ed25519Provider(seedBytes(seed)), resolver: KeyResolver.getResolver() })
  await did.authenticate()
  return did
}

const commands = {
  async did({ seeds }) {
    const dids = []
    for (const seed of seeds) dids.push((await authenticated(seed)).id)
    return { dids }
  },
  async sign({ seed, payloads }) {
    const did = await authenticated(seed)
    const jws = []
    for (const payload of payloads) jws.push(await did.createJWS(payload))
    return { did: did.id, jws }
  },
  async verify({ jws }) {
    const verifier = new DID({ resolver: KeyResolver.getResolver() })
    const results = []
    for (const one of jws) {
      try {
        const { kid, payload } = await verifier.verifyJWS(one)
        results.push({ ok: true, kid, payload })
      } catch (err) {
        results.push({ ok: false, error: String(err && err.message ? err.message : err) })
      }
    }
    return { results }
  },
}

const name = process.argv[2]
if (!Object.hasOwn(commands, name)) {
  process.stderr.write(`usage: node jws.mjs ${Object.keys(commands).join('|')} < request.json\n`)
  process.exit(2)
}
try {
  const answer = await commands[name](await readStdin())
  process.stdout.write(JSON.stringify(answer) + '\n')
} catch (err) {
  process.stderr.write(`error: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
}
