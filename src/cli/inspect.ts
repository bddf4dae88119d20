import { init } from '../backends/index.js';
import { LoRAContainer } from '../lora/container.js';

/** `peftjs inspect <adapter>`: load (PEFT or MLX, detected) and print the report table. */
export async function inspect(source: string): Promise<string> {
  await init();
  const container = await LoRAContainer.load(source);
  return container.report.toString();
}
