// The standard lab: client <-> router <-> server, IPv4 and IPv6, with the
// router forwarding. Addresses exist only inside these namespaces.
import { NamespaceLab } from './namespaceLab';

export interface RouterLab {
  lab: NamespaceLab;
  client: string;
  router: string;
  server: string;
  addr: { client4: string; server4: string; routerClient4: string; routerServer4: string; client6: string; server6: string };
}

export function buildRouterLab(prefix = 'tsct'): RouterLab {
  const lab = new NamespaceLab(prefix);
  try {
    const client = lab.addNamespace('client');
    const router = lab.addNamespace('router');
    const server = lab.addNamespace('server');
    lab.link({ ns: client, dev: 'eth0', addrs: ['10.200.1.2/24', 'fd00:200:1::2/64'] }, { ns: router, dev: 'eth1', addrs: ['10.200.1.1/24', 'fd00:200:1::1/64'] });
    lab.link({ ns: server, dev: 'eth0', addrs: ['10.200.2.2/24', 'fd00:200:2::2/64'] }, { ns: router, dev: 'eth2', addrs: ['10.200.2.1/24', 'fd00:200:2::1/64'] });
    lab.exec(client, 'ip', ['route', 'add', 'default', 'via', '10.200.1.1']);
    lab.exec(client, 'ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:200:1::1']);
    lab.exec(server, 'ip', ['route', 'add', 'default', 'via', '10.200.2.1']);
    lab.exec(server, 'ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:200:2::1']);
    lab.exec(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    return {
      lab,
      client,
      router,
      server,
      addr: { client4: '10.200.1.2', server4: '10.200.2.2', routerClient4: '10.200.1.1', routerServer4: '10.200.2.1', client6: 'fd00:200:1::2', server6: 'fd00:200:2::2' },
    };
  } catch (e) {
    lab.destroy();
    throw e;
  }
}
