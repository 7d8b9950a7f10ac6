// A minimal privileged test: the privilege gate's probe, and a check in its own right.
import { BpfObject } from 'libbpf-ts';
import { privTest } from './helpers/privilege';
import { FIXTURE_OBJ } from './helpers/paths';

privTest('the fixture object loads into the kernel', async (t) => {
  const obj = await BpfObject.open(FIXTURE_OBJ).load();
  t.true(obj.program('count_tc').id > 0);
  obj.close();
});
