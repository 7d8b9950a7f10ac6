// The Kubernetes manifests of deploy/kubernetes: each YAML file parses, each object is valid against the
// Kubernetes OpenAPI schema (kubernetes-models) and has no field the schema does not know (the attribute maps
// of @kubernetes/client-node's models, generated from the same API: the schema itself allows unknown fields,
// which the API server drops or refuses), the ConfigMap's config is the agent's flags and the agent takes it,
// the ClusterRole only reads, the DaemonSet is what deploy/README.md says and its probes point at the port of
// --prometheus-serve-addr, and the kustomization lists every file. No root, no cluster.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { AGENT_FLAGS, envName, parseServeAddr, resolveAgentOptions } from '../../src/agent/options';
import { ROOT } from '../helpers/paths';

const DIR = path.join(ROOT, 'deploy', 'kubernetes');
const KUSTOMIZATION = 'kustomization.yaml';

// Being added with the Kubernetes agent: allowed in the ConfigMap before AGENT_FLAGS has them. Once a flag
// is in AGENT_FLAGS it is checked as any other; remove it from here then.
const BEING_ADDED_WITH_THE_KUBERNETES_AGENT = ['k8s-node-name', 'k8s-kubeconfig-path', 'nodeport-addresses'];

/** What the agent may do with the API: read these, nothing else. */
const READ_VERBS = ['get', 'list', 'watch'];
const EXPECTED_RESOURCES = [
  '/services',
  '/nodes',
  '/pods',
  '/namespaces',
  'discovery.k8s.io/endpointslices',
  'networking.k8s.io/networkpolicies',
];
/** The DaemonSet's capabilities (the systemd unit's are the same: test/systemd-unit.test.ts). */
const CAPABILITIES = ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_ADMIN'];

// The shapes this test reads; the schema checks the rest.
interface Meta {
  name: string;
  namespace?: string;
  annotations?: Record<string, string>;
}
interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  [key: string]: unknown;
}
interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface Container {
  name: string;
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string> };
  securityContext?: {
    privileged?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { add?: string[]; drop?: string[] };
  };
  volumeMounts?: Array<{ name: string; mountPath: string; mountPropagation?: string; readOnly?: boolean }>;
}
interface PodSpec {
  serviceAccountName?: string;
  hostNetwork?: boolean;
  dnsPolicy?: string;
  priorityClassName?: string;
  tolerations?: Array<{ key?: string; operator?: string; effect?: string }>;
  containers: Container[];
  initContainers?: Container[];
  volumes?: Array<{
    name: string;
    hostPath?: { path: string; type?: string };
    configMap?: { name: string; items?: unknown[] };
  }>;
}
interface DaemonSetObject extends KubeObject {
  spec: {
    updateStrategy?: { type?: string; rollingUpdate?: { maxUnavailable?: number | string } };
    template: { metadata?: Meta; spec: PodSpec };
  };
}

/** Every file of deploy/kubernetes with the objects it holds, parsed strictly (a duplicate key is an error). */
function loadManifests(): Map<string, unknown[]> {
  const out = new Map<string, unknown[]>();
  for (const file of fs.readdirSync(DIR).sort()) {
    if (!/\.ya?ml$/.test(file)) continue;
    const docs = parseAllDocuments(fs.readFileSync(path.join(DIR, file), 'utf8'), { uniqueKeys: true });
    const list = Array.isArray(docs) ? docs : [docs];
    const problems = list.flatMap((d) => [...d.errors, ...d.warnings].map((e) => e.message));
    if (problems.length) throw new Error(`${file}: ${problems.join('; ')}`);
    out.set(
      file,
      list.map((d) => d.toJS()).filter((o) => o !== null),
    );
  }
  return out;
}

const manifests = loadManifests();
const objects = [...manifests.entries()]
  .filter(([file]) => file !== KUSTOMIZATION)
  .flatMap(([file, docs]) => docs.map((obj) => ({ file, obj: obj as KubeObject })));

function only<T extends KubeObject>(kind: string): T {
  const found = objects.filter((o) => o.obj.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind} in deploy/kubernetes, found ${found.length}`);
  return found[0].obj as T;
}

/** Validation by the OpenAPI schema, per apiVersion and kind: throws on a schema error. */
const MODELS: Record<string, (obj: KubeObject) => { validate(): void }> = {
  'v1/ConfigMap': (o) => new ConfigMap(o as never),
  'v1/ServiceAccount': (o) => new ServiceAccount(o as never),
  'rbac.authorization.k8s.io/v1/ClusterRole': (o) => new ClusterRole(o as never),
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': (o) => new ClusterRoleBinding(o as never),
  'apps/v1/DaemonSet': (o) => new DaemonSet(o as never),
};

type Attribute = { baseName: string; type: string };
type ModelClass = { getAttributeTypeMap(): Attribute[] };
type ClientModels = Record<string, ModelClass | undefined>;

let clientModels: Promise<ClientModels> | undefined;

/** @kubernetes/client-node's generated models only (an ES module; not its client, which needs a newer Node). */
function loadClientModels(): Promise<ClientModels> {
  clientModels ??= import('@kubernetes/client-node/dist/gen/models/ObjectSerializer.js').then(
    (m) => m as unknown as ClientModels,
  );
  return clientModels;
}

/** The paths of fields in `value` that its type does not have, as kubectl's strict field validation would. */
function unknownFields(models: ClientModels, type: string, value: unknown, at: string): string[] {
  const list = /^Array<(.+)>$/.exec(type);
  if (list)
    return Array.isArray(value) ? value.flatMap((v, i) => unknownFields(models, list[1], v, `${at}[${i}]`)) : [];
  const dict = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (dict) {
    if (!value || typeof value !== 'object') return [];
    return Object.entries(value).flatMap(([k, v]) => unknownFields(models, dict[1], v, `${at}.${k}`));
  }
  const model = models[type];
  if (!model || typeof model.getAttributeTypeMap !== 'function') return [];
  if (!value || typeof value !== 'object' || Array.isArray(value)) return [];
  const attrs = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  return Object.entries(value).flatMap(([k, v]) => {
    const t = attrs.get(k);
    return t === undefined ? [`${at}.${k}`] : unknownFields(models, t, v, `${at}.${k}`);
  });
}

function configJson(): Record<string, unknown> {
  const cm = only<KubeObject & { data: Record<string, string> }>('ConfigMap');
  return JSON.parse(cm.data['config.json']) as Record<string, unknown>;
}

function agentContainer(): Container {
  const ds = only<DaemonSetObject>('DaemonSet');
  const c = ds.spec.template.spec.containers.find((x) => x.name === 'agent');
  if (!c) throw new Error('the DaemonSet has no container named agent');
  return c;
}

test('every file of deploy/kubernetes is YAML of Kubernetes objects, each of a kind this test knows', (t) => {
  t.true(manifests.size >= 6, [...manifests.keys()].join(', '));
  for (const [file, docs] of manifests) t.true(docs.length > 0, `${file} holds no object`);
  for (const { file, obj } of objects) {
    t.truthy(MODELS[`${obj.apiVersion}/${obj.kind}`], `${file}: ${obj.apiVersion} ${obj.kind} has no model here`);
    t.truthy(obj.metadata?.name, `${file}: ${obj.kind} has no name`);
  }
});

test('every object is valid against the Kubernetes OpenAPI schema', (t) => {
  for (const { file, obj } of objects) {
    const model = MODELS[`${obj.apiVersion}/${obj.kind}`];
    if (!model) continue;
    t.notThrows(() => model(obj).validate(), `${file}: ${obj.kind} ${obj.metadata?.name}`);
  }
});

test('no object has a field the Kubernetes API does not know (a typo is not silently dropped)', async (t) => {
  const models = await loadClientModels();
  for (const { file, obj } of objects) {
    const type = `V1${obj.kind}`;
    t.truthy(models[type], `${file}: no client model ${type}`);
    t.deepEqual(unknownFields(models, type, obj, obj.kind), [], `${file}: unknown fields`);
  }
});

test('the walk over the API types finds a misspelt field at any depth', async (t) => {
  const models = await loadClientModels();
  const ds = structuredClone(only<DaemonSetObject>('DaemonSet'));
  const pod = ds.spec.template.spec as unknown as Record<string, unknown>;
  pod.hostNetwrok = true;
  (pod.containers as Array<Record<string, unknown>>)[0].securityContex = {};
  (pod.volumes as Array<{ hostPath?: Record<string, unknown> }>)[1].hostPath!.tpye = 'Directory';
  t.deepEqual(unknownFields(models, 'V1DaemonSet', ds, 'DaemonSet').sort(), [
    'DaemonSet.spec.template.spec.containers[0].securityContex',
    'DaemonSet.spec.template.spec.hostNetwrok',
    'DaemonSet.spec.template.spec.volumes[1].hostPath.tpye',
  ]);
});

test('the kustomization lists every other file, and the objects share its namespace', (t) => {
  const docs = manifests.get(KUSTOMIZATION);
  t.truthy(docs, `deploy/kubernetes/${KUSTOMIZATION} is missing`);
  const k = docs![0] as { apiVersion: string; kind: string; namespace?: string; resources: string[] };
  t.is(k.apiVersion, 'kustomize.config.k8s.io/v1beta1');
  t.is(k.kind, 'Kustomization');
  t.deepEqual(
    Object.keys(k).filter((key) => !['apiVersion', 'kind', 'namespace', 'resources', 'labels', 'images'].includes(key)),
    [],
    'fields this test does not know',
  );
  const files = [...manifests.keys()].filter((f) => f !== KUSTOMIZATION).sort();
  t.deepEqual([...k.resources].sort(), files);
  t.is(new Set(k.resources).size, k.resources.length, 'a file listed twice');
  t.is(k.namespace, 'kube-system');
  for (const { file, obj } of objects) {
    if (obj.kind.startsWith('Cluster')) t.is(obj.metadata.namespace, undefined, `${file}: cluster-scoped`);
    else t.is(obj.metadata.namespace, k.namespace, `${file}: namespace`);
  }
});

test('the ClusterRole reads services, endpointslices, nodes, pods, namespaces and networkpolicies, and writes nothing', (t) => {
  const role = only<KubeObject & { rules: Array<Record<string, string[] | undefined>> }>('ClusterRole');
  const pairs: string[] = [];
  for (const rule of role.rules) {
    t.deepEqual(
      (rule.verbs ?? []).filter((v) => !READ_VERBS.includes(v)),
      [],
      `write verbs (or '*') in ${JSON.stringify(rule)}`,
    );
    t.is(rule.nonResourceURLs, undefined);
    t.is(rule.resourceNames, undefined);
    for (const g of rule.apiGroups ?? []) {
      t.not(g, '*');
      for (const r of rule.resources ?? []) {
        t.false(r === '*' || r.includes('/'), `${r}: no wildcard, no subresource`);
        pairs.push(`${g}/${r}`);
      }
    }
  }
  t.deepEqual(pairs.sort(), [...EXPECTED_RESOURCES].sort());
  t.false(
    objects.some((o) => o.obj.kind === 'Role' || o.obj.kind === 'RoleBinding'),
    'no other grants',
  );
});

test("the binding grants that ClusterRole to the DaemonSet's service account, and the pods mount the ConfigMap", (t) => {
  const role = only<KubeObject>('ClusterRole');
  const sa = only<KubeObject>('ServiceAccount');
  const binding = only<
    KubeObject & {
      roleRef: { apiGroup: string; kind: string; name: string };
      subjects: Array<{ kind: string; name: string; namespace?: string }>;
    }
  >('ClusterRoleBinding');
  t.deepEqual(binding.roleRef, {
    apiGroup: 'rbac.authorization.k8s.io',
    kind: 'ClusterRole',
    name: role.metadata.name,
  });
  t.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
  const ds = only<DaemonSetObject>('DaemonSet');
  const pod = ds.spec.template.spec;
  t.is(pod.serviceAccountName, sa.metadata.name);
  t.is(ds.metadata.namespace, sa.metadata.namespace);

  // The image runs `tsct agent --config /etc/tsct/config.json` (deploy/Dockerfile).
  const dockerfile = fs.readFileSync(path.join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
  const entry = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
  t.truthy(entry, 'deploy/Dockerfile has an exec-form ENTRYPOINT');
  const argv = JSON.parse(entry![1]) as string[];
  t.deepEqual(argv.slice(1), ['agent', '--config', '/etc/tsct/config.json']);
  const configVolume = pod.volumes?.find((v) => v.configMap);
  t.is(configVolume?.configMap?.name, only<KubeObject>('ConfigMap').metadata.name);
  t.is(configVolume?.configMap?.items, undefined, 'every key of the ConfigMap, config.json among them');
  const mount = agentContainer().volumeMounts?.find((m) => m.name === configVolume?.name);
  t.is(mount?.mountPath, path.posix.dirname(argv[3]));
  t.true(mount?.readOnly);
});

test("every key of the ConfigMap's config.json is an agent flag, and the agent takes the whole config", (t) => {
  const config = configJson();
  const flags = new Set(AGENT_FLAGS.map((f) => f.flag));
  const unknown = Object.keys(config).filter(
    (k) => !flags.has(k) && !BEING_ADDED_WITH_THE_KUBERNETES_AGENT.includes(k),
  );
  t.deepEqual(unknown, [], 'not flags of `tsct agent` (src/agent/options.ts AGENT_FLAGS)');
  // What the agent reads now: the settings of flags it has (a pending Kubernetes flag it would refuse).
  const known = Object.fromEntries(Object.entries(config).filter(([k]) => flags.has(k)));
  const o = resolveAgentOptions(
    { config: '/etc/tsct/config.json' },
    { env: {}, readFile: () => JSON.stringify(known), totalMem: 16 * 2 ** 30 },
  );
  t.true(o.devices.length > 0);
  t.true(o.bpfRoot.startsWith('/sys/fs/bpf/'), 'the maps are pinned on the bpffs the DaemonSet mounts');
});

test('the DaemonSet: host network, the capabilities and no more, bpffs and the lock folder, on every node', (t) => {
  const ds = only<DaemonSetObject>('DaemonSet');
  const pod = ds.spec.template.spec;
  t.is(pod.hostNetwork, true);
  t.is(pod.dnsPolicy, 'ClusterFirstWithHostNet');
  t.is(pod.priorityClassName, 'system-node-critical');
  t.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
  t.true(
    (pod.tolerations ?? []).some((x) => x.operator === 'Exists' && x.key === undefined && x.effect === undefined),
    'a toleration of every taint',
  );
  t.is(pod.initContainers, undefined);
  t.is(pod.containers.length, 1);

  const c = agentContainer();
  const nodeName = c.env?.find((e) => e.name === 'NODE_NAME');
  t.deepEqual(nodeName?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
  const agentVars = new Set(['TSCT_CONFIG', ...AGENT_FLAGS.map((f) => envName(f.flag))]);
  for (const e of c.env ?? [])
    if (e.name.startsWith('TSCT_')) t.true(agentVars.has(e.name), `${e.name} is no variable of the agent`);

  const sc = c.securityContext;
  t.is(sc?.privileged, false);
  t.is(sc?.allowPrivilegeEscalation, false);
  t.deepEqual(sc?.capabilities?.drop, ['ALL']);
  t.deepEqual([...(sc?.capabilities?.add ?? [])].sort(), [...CAPABILITIES].sort());
  t.truthy(c.resources?.requests?.cpu);
  t.truthy(c.resources?.requests?.memory);

  const hostPath = (mountPath: string) => {
    const m = c.volumeMounts?.find((x) => x.mountPath === mountPath);
    return { mount: m, volume: pod.volumes?.find((v) => v.name === m?.name)?.hostPath };
  };
  const bpffs = hostPath('/sys/fs/bpf');
  t.is(bpffs.volume?.path, '/sys/fs/bpf');
  t.truthy(bpffs.mount?.mountPropagation, 'a mount propagation, so that the host mount is seen');
  const lock = hostPath('/run/tsct');
  t.deepEqual(lock.volume, { path: '/run/tsct', type: 'DirectoryOrCreate' });
  t.not(lock.mount?.readOnly, true);

  // The API server's own rule (not in the OpenAPI schema): Bidirectional only for a privileged container.
  for (const x of [...pod.containers, ...(pod.initContainers ?? [])])
    for (const m of x.volumeMounts ?? [])
      if (m.mountPropagation === 'Bidirectional')
        t.true(x.securityContext?.privileged, `${x.name}: Bidirectional mount propagation needs privileged: true`);
});

test("the probes and the scrape annotation point at the ConfigMap's --prometheus-serve-addr", (t) => {
  const addr = parseServeAddr(String(configJson()['prometheus-serve-addr']));
  t.is(addr.host, undefined, "every address (':PORT'): the kubelet probes the node's address, not loopback");
  const c = agentContainer();
  const portOf = (p: number | string | undefined) =>
    typeof p === 'string' ? c.ports?.find((x) => x.name === p)?.containerPort : p;
  const probes = { startupProbe: '/healthz', livenessProbe: '/healthz', readinessProbe: '/readyz' } as const;
  for (const [probe, want] of Object.entries(probes)) {
    const get = c[probe as keyof typeof probes]?.httpGet;
    if (probe === 'startupProbe' && !get) continue;
    t.is(get?.path, want, probe);
    t.is(portOf(get?.port), addr.port, `${probe}'s port`);
  }
  const annotations = only<DaemonSetObject>('DaemonSet').spec.template.metadata?.annotations ?? {};
  t.is(annotations['prometheus.io/scrape'], 'true');
  t.is(annotations['prometheus.io/port'], String(addr.port));
  t.is(annotations['prometheus.io/path'], '/metrics');
});
