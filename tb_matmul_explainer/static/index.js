// Placeholder: the built frontend bundle (frontend/) replaces this file.
export function render() {
  const message = document.createElement("p");
  message.textContent = "Matmul Explainer: the frontend bundle has not been built yet. Data routes: ./runs";
  document.body.appendChild(message);
}
