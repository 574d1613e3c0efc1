// qriff's model menu, for the Max patch and the Max for Live device: fills a [umenu] with the
// models `qriff serve` can generate with, shows the current one, and asks for a switch when the
// user picks another.
//
// The patch routes the server's replies here, each with a selector in front:
//   models id name name ...   the reply to /qriff/list/models (the server reads its models folder
//                             again for every list, so a model `qriff tune` just wrote is there)
//   model id name             the reply to /qriff/get/model or /qriff/set/model: the current model
//   pick name                 the item the user picked (the umenu's middle outlet)
// Out of outlet 0, into the umenu: "clear", "append NAME" per model, "setsymbol NAME" (shows the
// item without the umenu sending it on, so showing the current model never asks for a switch).
// Out of outlet 1: the name of the model to switch to; the patch sends /qriff/set/model id NAME.
// A refused switch (unknown model, a file that does not load, a style the model does not read)
// comes back as /qriff/error; the patch then asks /qriff/get/model again, and the menu goes back
// to the model that still generates.

autowatch = 1;
inlets = 1;
outlets = 2;

var items = [];      // the model ids in the menu, in the server's order
var current = null;  // the id of the model the server generates with, once it said so

function models() {
    var a = arrayfromargs(arguments);
    items = [];
    for (var i = 1; i < a.length; i++) {
        items.push(String(a[i]));
    }
    outlet(0, "clear");
    for (var j = 0; j < items.length; j++) {
        outlet(0, "append", items[j]);
    }
    if (current !== null && items.indexOf(current) >= 0) {
        outlet(0, "setsymbol", current);
    }
}

function model(id, name) {
    current = String(name);
    if (items.indexOf(current) < 0) {  // the server's model before the list arrived
        items.push(current);
        outlet(0, "append", current);
    }
    outlet(0, "setsymbol", current);
}

function pick(name) {
    var wanted = String(name);
    if (items.indexOf(wanted) < 0) {
        return;  // not a model the server listed
    }
    // sent even when it is the model the menu last heard of: another client may have switched since,
    // and the reply shows what the server really uses
    outlet(1, wanted);
}
