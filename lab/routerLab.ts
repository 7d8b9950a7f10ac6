// The standard lab: client <-> router <-> server, IPv4 and IPv6, with the
// router forwarding. Optionally a second client (its own link to the router)
// and a hop between router and server (for errors from past the router).
// Addresses exist only inside these namespaces.
import { NamespaceLab } from './namespaceLab';

export interface RouterLabOptions {
  /** A second client namespace on the router's eth3. */
  secondClient?: boolean;
  /** A forwarding hop between the router's eth2 and the server. */
  hop?: boolean;
  /**
   * The far ends of the router's links take redirected XDP frames: GRO on,
   * which gives a veth the NAPI context XDP_REDIRECT into it needs (without
   * one, frames redirected to its peer are dropped).
   */
  xdpPeers?: boolean;
}

export interface RouterLab {
  lab: NamespaceLab;
  client: string;
  client2: string | null;
  router: string;
  hop: string | null;
  server: string;
  addr: {
    client4: string;
    client6: string;
    client2v4: string;
    client2v6: string;
    routerClient4: string;
    /** The router's address towards the server: what masquerading translates to. */
    routerServer4: string;
    routerServer6: string;
    hop4: string;
    server4: string;
    server6: string;
  };
}

export function buildRouterLab(prefix = 'tsct', o: RouterLabOptions = {}): RouterLab {
  const lab = new NamespaceLab(prefix);
  try {
    const client = lab.addNamespace('client');
    const router = lab.addNamespace('router');
    const server = lab.addNamespace('server');
    const client2 = o.secondClient ? lab.addNamespace('client2') : null;
    const hop = o.hop ? lab.addNamespace('hop') : null;
    const serverNet = hop ? '10.200.4' : '10.200.2';
    const serverNet6 = hop ? 'fd00:200:4' : 'fd00:200:2';
    const route = (ns: string, v6: boolean, to: string, via: string) =>
      lab.exec(ns, 'ip', [...(v6 ? ['-6'] : []), 'route', 'add', to, 'via', via]);

    lab.link(
      { ns: client, dev: 'eth0', addrs: ['10.200.1.2/24', 'fd00:200:1::2/64'] },
      { ns: router, dev: 'eth1', addrs: ['10.200.1.1/24', 'fd00:200:1::1/64'] },
    );
    route(client, false, 'default', '10.200.1.1');
    route(client, true, 'default', 'fd00:200:1::1');
    if (client2) {
      lab.link(
        { ns: client2, dev: 'eth0', addrs: ['10.200.3.2/24', 'fd00:200:3::2/64'] },
        { ns: router, dev: 'eth3', addrs: ['10.200.3.1/24', 'fd00:200:3::1/64'] },
      );
      route(client2, false, 'default', '10.200.3.1');
      route(client2, true, 'default', 'fd00:200:3::1');
    }
    if (hop) {
      lab.link(
        { ns: hop, dev: 'eth0', addrs: ['10.200.2.3/24', 'fd00:200:2::3/64'] },
        { ns: router, dev: 'eth2', addrs: ['10.200.2.1/24', 'fd00:200:2::1/64'] },
      );
      lab.link(
        { ns: server, dev: 'eth0', addrs: ['10.200.4.2/24', 'fd00:200:4::2/64'] },
        { ns: hop, dev: 'eth1', addrs: ['10.200.4.1/24', 'fd00:200:4::1/64'] },
      );
      route(router, false, '10.200.4.0/24', '10.200.2.3');
      route(router, true, 'fd00:200:4::/64', 'fd00:200:2::3');
      route(hop, false, '10.200.0.0/16', '10.200.2.1');
      route(hop, true, 'fd00:200::/32', 'fd00:200:2::1');
      lab.exec(hop, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
      route(server, false, 'default', '10.200.4.1');
      route(server, true, 'default', 'fd00:200:4::1');
    } else {
      lab.link(
        { ns: server, dev: 'eth0', addrs: ['10.200.2.2/24', 'fd00:200:2::2/64'] },
        { ns: router, dev: 'eth2', addrs: ['10.200.2.1/24', 'fd00:200:2::1/64'] },
      );
      route(server, false, 'default', '10.200.2.1');
      route(server, true, 'default', 'fd00:200:2::1');
    }
    lab.exec(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    if (o.xdpPeers)
      for (const ns of [client, client2, hop ?? server])
        if (ns) lab.exec(ns, 'ethtool', ['-K', 'eth0', 'gro', 'on', 'tx', 'off']);
    return {
      lab,
      client,
      client2,
      router,
      hop,
      server,
      addr: {
        client4: '10.200.1.2',
        client6: 'fd00:200:1::2',
        client2v4: '10.200.3.2',
        client2v6: 'fd00:200:3::2',
        routerClient4: '10.200.1.1',
        routerServer4: '10.200.2.1',
        routerServer6: 'fd00:200:2::1',
        hop4: '10.200.2.3',
        server4: `${serverNet}.2`,
        server6: `${serverNet6}::2`,
      },
    };
  } catch (e) {
    lab.destroy();
    throw e;
  }
}
