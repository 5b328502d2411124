// tunnelmesh console: the little that plain HTML forms cannot do. No framework, no build step.
// Text only ever goes in through textContent/value, never as markup.

function csrfToken() {
  const input = document.querySelector("input[name=csrf]");
  return input ? input.value : "";
}

// "select all" for a multi-delete: a checkbox with data-select-all names the form whose boxes it drives
function selectAll() {
  for (const box of document.querySelectorAll("input[data-select-all]")) {
    box.addEventListener("change", () => {
      const form = document.getElementById(box.dataset.selectAll);
      if (!form) return;
      for (const item of form.querySelectorAll("input[type=checkbox][name=key]")) item.checked = box.checked;
    });
  }
}

// a copy button: data-copy names the element whose text or value goes to the clipboard
function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const text = "value" in source ? source.value : source.textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        if (source.select) source.select();
        button.textContent = "Press Ctrl+C";
      }
    });
  }
}

export { csrfToken };

selectAll();
copyButtons();
// tells a test (and anyone curious) that the module ran under the page's CSP
document.documentElement.dataset.console = "ready";
