/**
 * Entry point of the TensorBoard tab. TensorBoard loads this ES module in the plugin's iframe
 * (data/plugin_entry.html, whose <base> is data/plugin/matmul_explainer/) and calls `render()`.
 */
import { App } from './app';

export async function render(): Promise<void> {
  const app = new App();
  document.body.appendChild(app.root);
  await app.start();
}
