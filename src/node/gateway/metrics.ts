/** Prometheus text exposition for GET /metrics: counters and gauges, no library needed. */

type Labels = Record<string, string>;

const escapeLabel = (v: string): string =>
  v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelText = (labels: Labels): string => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};

interface Family {
  help: string;
  type: 'counter' | 'gauge';
  values: Map<string, number>;
  collect?: () => number;
}

export class Metrics {
  private readonly families = new Map<string, Family>();

  counter(name: string, help: string): (labels?: Labels, by?: number) => void {
    const family = this.family(name, help, 'counter');
    return (labels = {}, by = 1) => {
      const key = labelText(labels);
      family.values.set(key, (family.values.get(key) ?? 0) + by);
    };
  }

  /** A gauge read when scraped. */
  gauge(name: string, help: string, collect: () => number): void {
    this.family(name, help, 'gauge').collect = collect;
  }

  /** A gauge with a fixed value and labels, such as build info. */
  info(name: string, help: string, labels: Labels): void {
    this.family(name, help, 'gauge').values.set(labelText(labels), 1);
  }

  render(): string {
    let out = '';
    for (const [name, f] of this.families) {
      out += `# HELP ${name} ${f.help}\n# TYPE ${name} ${f.type}\n`;
      if (f.collect) out += `${name} ${f.collect()}\n`;
      for (const [labels, value] of f.values) out += `${name}${labels} ${value}\n`;
    }
    return out;
  }

  private family(name: string, help: string, type: Family['type']): Family {
    let f = this.families.get(name);
    if (!f) {
      f = { help, type, values: new Map() };
      this.families.set(name, f);
    }
    return f;
  }
}
