/**
 * A page's node as the console, `npm run bench` and these tests reach it: src/client/main.ts
 * puts it on the window as `rtcmesh.node`. Only what the tests call is typed.
 */
export type NodeStream = {
  send(m: Uint8Array | string): Promise<void>;
  readable: ReadableStream<Uint8Array | string>;
  close(): void;
};

export type NodeWindow = Window & {
  rtcmesh: {
    node: {
      dial(to: string, service: string): Promise<NodeStream>;
      listen(service: string, handler: (s: NodeStream) => void): void;
      link(id: string): { path(): Promise<Record<string, unknown>> } | undefined;
    };
  };
};
