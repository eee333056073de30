// Progressive enhancement: refuse over-large files before they are sent, so
// nothing typed is lost. The server checks the same limits on its own.
document.querySelectorAll("form.upload-form").forEach(function (form) {
  form.addEventListener("submit", function (event) {
    var maxFile = Number(form.dataset.maxFile), maxTotal = Number(form.dataset.maxTotal);
    var box = form.querySelector(".upload-error"), total = 0, problem = "";
    form.querySelectorAll("input[type=file]").forEach(function (input) {
      Array.prototype.forEach.call(input.files || [], function (file) {
        total += file.size;
        if (file.size > maxFile && !problem) problem = form.dataset.tooLarge + " " + file.name;
      });
    });
    if (!problem && total > maxTotal) problem = form.dataset.tooLarge + " " + Math.round(total / 1048576) + " MB";
    if (problem) {
      event.preventDefault();
      box.textContent = problem;
      box.hidden = false;
      box.focus();
    }
  });
});
