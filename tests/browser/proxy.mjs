// A TCP proxy on loopback between the browser and the server, to break the link the ways
// networks and servers do: a black hole (nothing passes, nothing closes), the server gone
// (connections reset and refused), and back again.
import net from 'node:net';

/** Starts a proxy to `target` (an http://host:port URL); resolves to its controls. */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  let mode = 'up';
  const links = new Set();

  const server = net.createServer((client) => {
    const link = { client, upstream: null };
    links.add(link);
    client.on('close', () => links.delete(link));
    client.on('error', () => {});
    if (mode === 'down') {
      client.destroy();
      return;
    }
    if (mode === 'blackhole') {
      client.pause();
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    link.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;

  return {
    url,
    /** Nothing passes any more in either direction, and nothing is closed. */
    blackhole() {
      mode = 'blackhole';
      for (const { client, upstream } of links) {
        if (!upstream) continue;
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    /** As a stopped server: every connection is reset, new ones are closed at once. */
    down() {
      mode = 'down';
      for (const { client, upstream } of links) {
        client.destroy();
        upstream?.destroy();
      }
    },
    /** The link works again (held connections are dropped, as a network would). */
    up() {
      mode = 'up';
      for (const { client, upstream } of links) {
        if (upstream?.isPaused()) {
          client.destroy();
          upstream.destroy();
        } else if (!upstream) {
          client.destroy();
        }
      }
    },
    close() {
      for (const { client, upstream } of links) {
        client.destroy();
        upstream?.destroy();
      }
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
