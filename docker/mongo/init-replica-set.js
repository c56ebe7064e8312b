// Run by the compose `mongo-init` service as the root user (mongosh --file). Idempotent:
// 1. initiates the single-node replica set the first time;
// 2. waits until this node is primary;
// 3. creates (or updates the password of) podrec's read-write user and the Dash app's read-only user.
const rsName = process.env.MONGO_REPLICA_SET || "rs0";
const dbName = process.env.PODREC_MONGO_DB || "podrec";

let initiated = true;
try {
  rs.status();
} catch (error) {
  if (error.codeName !== "NotYetInitialized") throw error;
  initiated = false;
}
if (!initiated) {
  // members' host is the compose service name: clients on the host connect with directConnection=true.
  rs.initiate({ _id: rsName, members: [{ _id: 0, host: "mongo:27017" }] });
  print(`replica set ${rsName} initiated`);
}

for (let waited = 0; !db.hello().isWritablePrimary; waited++) {
  if (waited >= 60) throw new Error(`no primary in replica set ${rsName} after 60 s`);
  sleep(1000);
}

const admin = db.getSiblingDB("admin");
function ensureUser(user, pwd, roles) {
  if (!user || !pwd) throw new Error("a MongoDB user name or password is empty (docker/.env)");
  if (admin.getUser(user)) {
    admin.updateUser(user, { pwd, roles });
    print(`user ${user} updated`);
  } else {
    admin.createUser({ user, pwd, roles });
    print(`user ${user} created`);
  }
}
ensureUser(process.env.MONGO_APP_USER, process.env.MONGO_APP_PASSWORD, [{ role: "readWrite", db: dbName }]);
ensureUser(process.env.MONGO_READER_USER, process.env.MONGO_READER_PASSWORD, [{ role: "read", db: dbName }]);
