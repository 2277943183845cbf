import net from 'node:net';
import { ServiceError } from '../core/errors.js';

/** True when nothing listens on host:port (we can bind it ourselves). */
export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the OS reports free right now; used for test stacks so they never collide with a dev stack. */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not determine a free port'));
      });
    });
  });
}

/** `count` distinct free ports. */
export async function findFreePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await findFreePort(host));
  return [...ports];
}

/**
 * Fails with one message naming the service, the port and the variable to change when a port is taken, so that a
 * second stack never half-starts on top of the first.
 */
export async function assertPortFree(
  service: string,
  port: number,
  variable: string,
  host = '127.0.0.1',
): Promise<void> {
  if (!(await isPortFree(port, host))) {
    throw new ServiceError(
      service,
      `port ${port} on ${host} is already in use (is another stack running?). Stop whatever listens there, or set ${variable} to a free port.`,
    );
  }
}
