// Order form: filter the product list as the rep types (name or SKU). Without JS every product shows.
(function () {
  "use strict";
  var filter = document.getElementById("product-filter");
  var list = document.getElementById("order-products");
  var empty = document.getElementById("order-products-empty");
  if (!filter || !list) { return; }
  filter.addEventListener("input", function () {
    var term = filter.value.trim().toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(list.querySelectorAll("li[data-search]"), function (row) {
      var hasQuantity = row.querySelector("input").value !== "";
      var match = term === "" || row.getAttribute("data-search").indexOf(term) !== -1 || hasQuantity;
      row.hidden = !match;
      if (match) { shown += 1; }
    });
    if (empty) { empty.hidden = shown !== 0; }
  });
}());
